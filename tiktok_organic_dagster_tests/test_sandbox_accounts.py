"""The sandbox with several accounts of one app, over real HTTP: separate tokens, profiles and videos, one
app-wide rate limit, per-account revoke and admin, and the CLI's per-account env lines."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tiktok_organic_dagster.sandbox import SandboxConfig, SandboxServer
from tiktok_organic_dagster.sandbox.data import Account

TIMEOUT = 5
ANCHOR = 1_780_000_000
NAMES = ["account_1", "account_2", "account_3"]


def token_request(server: SandboxServer, **form: str) -> requests.Response:
    data = {"client_key": server.client_id, "client_secret": server.client_secret, **form}
    return requests.post(f"{server.base_url}/v2/oauth/token/", data=data, timeout=TIMEOUT)


def refresh(server: SandboxServer, refresh_token: str) -> dict[str, Any]:
    resp = token_request(server, grant_type="refresh_token", refresh_token=refresh_token)
    assert resp.status_code == 200, resp.text
    return resp.json()


def access_for(server: SandboxServer, account: str) -> str:
    rft = server.current_refresh_token(account)
    assert rft is not None
    return refresh(server, rft)["access_token"]


def user_info(server: SandboxServer, token: str, fields: str = "open_id") -> requests.Response:
    return requests.get(f"{server.base_url}/v2/user/info/?fields={fields}",
                        headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)


def list_page(server: SandboxServer, token: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{server.base_url}/v2/video/list/?fields=id,create_time", json=body,
                         headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)


def page_all(server: SandboxServer, token: str, max_count: int = 20) -> list[dict[str, Any]]:
    videos: list[dict[str, Any]] = []
    body: dict[str, Any] = {"max_count": max_count}
    for _ in range(1000):
        data = list_page(server, token, body).json()["data"]
        videos += data["videos"]
        if not data["has_more"]:
            return videos
        body = {"max_count": max_count, "cursor": data["cursor"]}
    raise AssertionError("pagination did not terminate")


def query_ids(server: SandboxServer, token: str, ids: list[str]) -> list[str]:
    resp = requests.post(f"{server.base_url}/v2/video/query/?fields=id", json={"filters": {"video_ids": ids}},
                         headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
    assert resp.status_code == 200, resp.text
    return [v["id"] for v in resp.json()["data"]["videos"]]


# ---- data separation ---------------------------------------------------------------------------------
def test_each_token_sees_only_its_own_account(sandbox_factory) -> None:
    server = sandbox_factory(accounts=3, video_count=45, anchor_time=ANCHOR)
    assert server.account_names == NAMES
    assert list(server.initial_refresh_tokens) == NAMES
    assert server.initial_refresh_token == server.initial_refresh_tokens["account_1"]
    open_ids = {name: server.user(name)["open_id"] for name in NAMES}
    assert len(set(open_ids.values())) == 3
    assert len({server.user(name)["display_name"] for name in NAMES}) == 3
    all_ids: set[str] = set()
    for name in NAMES:
        grant = refresh(server, server.initial_refresh_tokens[name])
        assert grant["open_id"] == open_ids[name]
        token = grant["access_token"]
        everything = user_info(server, token, "open_id,display_name,video_count").json()["data"]["user"]
        assert everything == {"open_id": open_ids[name], "display_name": server.user(name)["display_name"],
                              "video_count": 45}
        paged = page_all(server, token)
        assert [v["id"] for v in paged] == [v["id"] for v in server.videos(name)]
        ids = {v["id"] for v in paged}
        assert len(ids) == 45 and not ids & all_ids  # ids are unique across the app's accounts
        all_ids |= ids
    # video/query answers only the token owner's videos: another account's ids are dropped like unknown ones
    token_1 = access_for(server, "account_1")
    mine, theirs = server.videos("account_1")[0]["id"], server.videos("account_2")[0]["id"]
    assert query_ids(server, token_1, [mine, theirs]) == [mine]


def test_first_account_is_the_single_account_data_and_others_differ(sandbox_factory) -> None:
    single = sandbox_factory(seed=3, anchor_time=ANCHOR, video_count=80, same_second_every=5)
    multi = sandbox_factory(seed=3, anchor_time=ANCHOR, video_count=80, same_second_every=5, accounts=2)
    assert multi.videos("account_1") == single.videos() == multi.videos()
    assert multi.user("account_1") == single.user() and multi.client_id == single.client_id
    other = multi.videos("account_2")
    assert other != single.videos() and multi.user("account_2")["open_id"] != single.user()["open_id"]
    for name in ("account_1", "account_2"):
        videos = multi.videos(name)
        times = [v["create_time"] for v in videos]
        assert times == sorted(times, reverse=True)
        assert len(set(times)) < len(times)  # same_second_every applies to every account
        assert all(int(v["id"]) >> 32 == v["create_time"] for v in videos)
        span = times[0] - times[-1]
        assert 300 * 86400 < span < 3 * 365 * 86400 and times[0] < ANCHOR
        # hidden milliseconds: paging 3 at a time splits shared seconds and still loses nothing
        assert [v["id"] for v in page_all(multi, access_for(multi, name), 3)] == [v["id"] for v in videos]


def test_video_ids_never_repeat_across_accounts_even_when_the_random_draws_would() -> None:
    """Two accounts on the SAME seed draw the same ids; the peer check must redraw them (generated and added)."""
    twin = Account(30, 3, ANCHOR, 0, "ck", same_second_every=4)
    assert [v.id for v in twin.all_videos()] == [v.id for v in Account(30, 3, ANCHOR, 0, "ck", 4).all_videos()]
    first = Account(30, 3, ANCHOR, 0, "ck", same_second_every=4)
    second = Account(30, 3, ANCHOR, 0, "ck", same_second_every=4, peers=[first])
    first.peers = [second]
    assert second.all_videos()[0].create_time == first.all_videos()[0].create_time  # the newest: first draw collided
    assert not {v.id for v in first.all_videos()} & {v.id for v in second.all_videos()}
    assert all(int(v.id) >> 32 == v.create_time for v in second.all_videos())
    added_1, added_2 = first.add(3, ANCHOR), second.add(3, ANCHOR)
    assert [v.create_time for v in added_1] == [v.create_time for v in added_2]
    assert not {v.id for v in added_1} & {v.id for v in added_2}


def test_named_accounts_and_validation(sandbox_factory) -> None:
    server = sandbox_factory(account_names=("brand_a", "brand_b"), video_count=5)
    assert server.account_names == ["brand_a", "brand_b"]
    assert server.user("brand_b")["open_id"] != server.user("brand_a")["open_id"]
    with pytest.raises(KeyError, match="unknown account"):
        server.user("account_1")
    for bad in (("Brand",), ("1st",), ("a-b",), ("dup", "dup")):
        with pytest.raises(ValueError):
            SandboxServer(SandboxConfig(account_names=bad, video_count=1))
    with pytest.raises(ValueError, match="accounts=3"):
        SandboxServer(SandboxConfig(accounts=3, account_names=("a", "b"), video_count=1))
    with pytest.raises(ValueError):
        SandboxServer(SandboxConfig(accounts=0, video_count=1))


# ---- OAuth per account -------------------------------------------------------------------------------
def test_strict_rotation_is_per_account(sandbox_factory) -> None:
    server = sandbox_factory(accounts=2, video_count=3)
    first = refresh(server, server.initial_refresh_tokens["account_1"])
    second = refresh(server, first["refresh_token"])
    assert server.current_refresh_token("account_1") == second["refresh_token"]
    assert server.current_refresh_token() == second["refresh_token"]  # None = the first account
    assert server.current_refresh_token("account_2") == server.initial_refresh_tokens["account_2"]
    stale = token_request(server, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert stale.status_code == 400 and stale.json()["error"] == "invalid_grant"
    other = refresh(server, server.initial_refresh_tokens["account_2"])  # untouched by account_1's rotation
    assert other["open_id"] == server.user("account_2")["open_id"]
    assert user_info(server, second["access_token"]).json()["data"]["user"]["open_id"] == \
        server.user("account_1")["open_id"]
    replay = token_request(server, grant_type="refresh_token", refresh_token=server.initial_refresh_tokens["account_2"])
    assert replay.json()["error"] == "invalid_grant"

    code = server.issue_authorization_code(account="account_2")
    exchanged = token_request(server, grant_type="authorization_code", code=code).json()
    assert exchanged["open_id"] == server.user("account_2")["open_id"]
    assert server.current_refresh_token("account_2") == exchanged["refresh_token"]
    assert server.current_refresh_token("account_1") == second["refresh_token"]


def test_revoke_ends_one_accounts_authorization_only(sandbox_factory) -> None:
    server = sandbox_factory(accounts=2, video_count=3)
    token_1, token_2 = access_for(server, "account_1"), access_for(server, "account_2")
    rft_2 = server.current_refresh_token("account_2")
    revoked = requests.post(f"{server.base_url}/v2/oauth/revoke/", timeout=TIMEOUT, data={
        "client_key": server.client_id, "client_secret": server.client_secret, "token": token_2})
    assert revoked.status_code == 200 and revoked.json() == {}
    dead = user_info(server, token_2)
    assert dead.status_code == 401 and dead.json()["error"]["code"] == "access_token_invalid"
    gone = token_request(server, grant_type="refresh_token", refresh_token=rft_2 or "")
    assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant"
    assert server.current_refresh_token("account_2") is None
    assert user_info(server, token_1).status_code == 200  # the other account is unaffected
    assert refresh(server, server.current_refresh_token("account_1") or "")["open_id"] == \
        server.user("account_1")["open_id"]
    state = requests.get(f"{server.base_url}/_sandbox/state", timeout=TIMEOUT).json()
    assert [(a["name"], a["authorized"]) for a in state["accounts"]] == [("account_1", True), ("account_2", False)]
    assert server.request_counts_by_account()["account_2"]["oauth_revoke"] == 1


def test_token_admin_acts_on_the_named_account(sandbox_factory) -> None:
    server = sandbox_factory(accounts=2, video_count=3)
    token_1, token_2 = access_for(server, "account_1"), access_for(server, "account_2")
    server.expire_access_tokens("account_2")
    assert user_info(server, token_2).status_code == 401 and user_info(server, token_1).status_code == 200
    rft_1 = server.current_refresh_token("account_1") or ""
    server.expire_refresh_tokens()  # None = the first account
    expired = token_request(server, grant_type="refresh_token", refresh_token=rft_1)
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"
    assert server.current_refresh_token("account_1") is None
    assert server.current_refresh_token("account_2") is not None
    server.revoke_all_tokens("account_2")
    assert server.current_refresh_token("account_2") is None
    with pytest.raises(KeyError):
        server.revoke_all_tokens("account_9")


# ---- rate limit ----------------------------------------------------------------------------------------
def test_rate_limit_window_is_shared_by_all_accounts(sandbox_factory) -> None:
    server = sandbox_factory(accounts=2, video_count=3, rate_limit=3, rate_window_seconds=30)
    assert server.config.rate_limit_scope == "app"
    token_1, token_2 = access_for(server, "account_1"), access_for(server, "account_2")
    server.reset_counts()
    assert [user_info(server, t).status_code for t in (token_1, token_2, token_1)] == [200] * 3
    limited_2, limited_1 = user_info(server, token_2), user_info(server, token_1)
    assert limited_2.status_code == limited_1.status_code == 429
    assert limited_1.json()["error"]["code"] == "rate_limit_exceeded"
    assert list_page(server, token_2, {}).status_code == 200  # still one window per endpoint
    assert server.status_counts() == {200: 4, 429: 2}
    by_account = server.request_counts_by_account()
    assert by_account["account_1"]["user_info"] == 3 and by_account["account_2"]["user_info"] == 2
    assert server.status_counts_by_account() == {"account_1": {200: 2, 429: 1}, "account_2": {200: 2, 429: 1}}
    assert sum(server.request_counts().values()) == 6


def test_rate_limit_per_account_scope(sandbox_factory) -> None:
    server = sandbox_factory(accounts=2, video_count=3, rate_limit=2, rate_window_seconds=30,
                             rate_limit_scope="account")
    token_1, token_2 = access_for(server, "account_1"), access_for(server, "account_2")
    assert [user_info(server, token_1).status_code for _ in range(3)] == [200, 200, 429]
    assert user_info(server, token_2).status_code == 200


# ---- mutations and admin ---------------------------------------------------------------------------------
def test_mutations_and_admin_endpoints_take_an_account(sandbox_factory) -> None:
    server = sandbox_factory(accounts=2, video_count=10)
    base = f"{server.base_url}/_sandbox"
    token_2 = access_for(server, "account_2")
    added = requests.post(f"{base}/add_videos", json={"count": 2, "account": "account_2"}, timeout=TIMEOUT).json()
    assert added["video_count"] == 12 and len(server.videos("account_1")) == 10
    assert [v["id"] for v in page_all(server, token_2)][:2] == added["added"]
    by_query = requests.post(f"{base}/add_videos?account=account_2", json={"count": 1}, timeout=TIMEOUT).json()
    assert by_query["video_count"] == 13
    assert requests.post(f"{base}/delete_video", json={"id": added["added"][0]}, timeout=TIMEOUT).status_code == 404
    deleted = requests.post(f"{base}/delete_video", json={"id": added["added"][0], "account": "account_2"},
                            timeout=TIMEOUT)
    assert deleted.json()["video_count"] == 12
    target = server.videos("account_2")[3]
    changed = requests.post(f"{base}/bump_counters", json={"video_ids": [target["id"]], "account": "account_2"},
                            timeout=TIMEOUT).json()["changed"]
    assert changed == [target["id"]]
    assert next(v for v in server.videos("account_2") if v["id"] == target["id"])["view_count"] > target["view_count"]
    unknown = requests.post(f"{base}/add_videos", json={"count": 1, "account": "nobody"}, timeout=TIMEOUT)
    assert unknown.status_code == 404 and "nobody" in unknown.json()["error"]
    assert len(server.videos("account_1")) == 10  # nothing landed on the first account

    assert requests.post(f"{base}/expire_access_tokens", json={"account": "account_2"}, timeout=TIMEOUT).ok
    assert user_info(server, token_2).status_code == 401

    state = requests.get(f"{base}/state", timeout=TIMEOUT).json()
    assert state["account_names"] == ["account_1", "account_2"] and state["video_count"] == 10
    assert [(a["name"], a["video_count"], a["open_id"]) for a in state["accounts"]] == [
        ("account_1", 10, server.user("account_1")["open_id"]), ("account_2", 12, server.user("account_2")["open_id"])]
    dumped = json.dumps(state)
    for secret in (server.client_secret, *server.initial_refresh_tokens.values(), *server.issued_tokens()):
        assert secret not in dumped

    python_added = server.add_videos(1, account="account_1")
    assert server.videos("account_1")[0]["id"] == python_added[0]["id"]
    server.delete_video(python_added[0]["id"], account="account_1")
    with pytest.raises(KeyError):
        server.delete_video(server.videos("account_2")[0]["id"], account="account_1")
    assert len(server.bump_counters(fraction=0.5, account="account_2")) == 6


# ---- CLI ---------------------------------------------------------------------------------------------------
def test_cli_serves_n_accounts_and_writes_one_env_line_per_account(tmp_path: Path) -> None:
    env_file = tmp_path / "sandbox.env"
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tiktok_organic_dagster.sandbox", "--port", "0", "--videos", "7", "--accounts", "3",
         "--env-file", str(env_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["accounts"] == NAMES and info["videos"] == 7
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        per_account = {k: v for k, v in env.items() if k.startswith("ACCOUNT_")}
        assert set(per_account) == {"ACCOUNT_1_REFRESH_TOKEN", "ACCOUNT_2_REFRESH_TOKEN", "ACCOUNT_3_REFRESH_TOKEN"}
        assert env["TIKTOK_REFRESH_TOKEN"] == env["ACCOUNT_1_REFRESH_TOKEN"]
        state = requests.get(f"{info['base_url']}/_sandbox/state", timeout=TIMEOUT).json()
        expected = {a["name"]: a["open_id"] for a in state["accounts"]}
        for name in NAMES:
            resp = requests.post(f"{info['base_url']}/v2/oauth/token/", timeout=TIMEOUT, data={
                "client_key": env["TIKTOK_CLIENT_ID"], "client_secret": env["TIKTOK_CLIENT_SECRET"],
                "grant_type": "refresh_token", "refresh_token": env[f"{name.upper()}_REFRESH_TOKEN"]})
            assert resp.status_code == 200 and resp.json()["open_id"] == expected[name]
        assert len(set(expected.values())) == 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
    assert proc.stdout.read() == ""
