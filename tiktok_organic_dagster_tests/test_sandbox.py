"""The sandbox itself, over real HTTP: OAuth, data endpoints, limits, faults, mutations, admin, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tiktok_organic_dagster.sandbox import (
    EXTRA_FIELD_NAME,
    USER_FIELD_SCOPES,
    VIDEO_FIELDS,
    Faults,
    SandboxConfig,
    SandboxServer,
)

TIMEOUT = 5
ALL_VIDEO_FIELDS = ",".join(VIDEO_FIELDS)
LOG_ID = re.compile(r"^\d{14}[0-9A-F]{20}$")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# ---- helpers -------------------------------------------------------------------------------------
def token_request(server: SandboxServer, **form: str) -> requests.Response:
    data = {"client_key": server.client_id, "client_secret": server.client_secret, **form}
    return requests.post(f"{server.base_url}/v2/oauth/token/", data=data, timeout=TIMEOUT)


def refresh(server: SandboxServer, refresh_token: str | None = None) -> dict[str, Any]:
    resp = token_request(
        server,
        grant_type="refresh_token",
        refresh_token=refresh_token or server.current_refresh_token() or "",
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def access_token(server: SandboxServer) -> str:
    return refresh(server)["access_token"]


def list_videos(
    server: SandboxServer, token: str, body: Any = None, fields: str = "id,create_time"
) -> requests.Response:
    return requests.post(
        f"{server.base_url}/v2/video/list/?fields={fields}",
        json={} if body is None else body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )


def query_videos(server: SandboxServer, token: str, ids: list[Any], fields: str = "id") -> requests.Response:
    return requests.post(
        f"{server.base_url}/v2/video/query/?fields={fields}",
        json={"filters": {"video_ids": ids}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )


def user_info(server: SandboxServer, token: str, fields: str) -> requests.Response:
    return requests.get(
        f"{server.base_url}/v2/user/info/?fields={fields}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )


def page_all(server: SandboxServer, token: str, max_count: int = 20) -> tuple[list[dict], list[dict]]:
    """All videos by following cursors, plus the raw page payloads."""
    videos: list[dict] = []
    pages: list[dict] = []
    cursor = None
    for _ in range(1000):
        body: dict[str, Any] = {"max_count": max_count}
        if cursor is not None:
            body["cursor"] = cursor
        resp = list_videos(server, token, body)
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        pages.append(data)
        videos += data["videos"]
        if not data["has_more"]:
            return videos, pages
        cursor = data["cursor"]
    raise AssertionError("pagination did not terminate")


def error_code(resp: requests.Response) -> str:
    return resp.json()["error"]["code"]


# ---- OAuth -------------------------------------------------------------------------------------
def test_refresh_returns_flat_token_and_rotates_strictly(sandbox: SandboxServer) -> None:
    first = token_request(sandbox, grant_type="refresh_token", refresh_token=sandbox.initial_refresh_token)
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {
        "access_token",
        "expires_in",
        "open_id",
        "refresh_expires_in",
        "refresh_token",
        "scope",
        "token_type",
    }
    assert body["access_token"].startswith("act.") and body["refresh_token"].startswith("rft.")
    assert body["token_type"] == "Bearer" and body["expires_in"] == 86400
    assert 0 < body["refresh_expires_in"] <= 31536000
    assert body["scope"] == "user.info.basic,user.info.profile,user.info.stats,video.list"
    assert body["open_id"] == sandbox.user()["open_id"]
    assert body["refresh_token"] != sandbox.initial_refresh_token
    assert sandbox.current_refresh_token() == body["refresh_token"]

    old = token_request(sandbox, grant_type="refresh_token", refresh_token=sandbox.initial_refresh_token)
    assert old.status_code == 400
    assert old.json()["error"] == "invalid_grant"
    assert set(old.json()) == {"error", "error_description", "log_id"}

    second = refresh(sandbox, body["refresh_token"])
    assert second["refresh_token"] not in (body["refresh_token"], sandbox.initial_refresh_token)
    assert (
        token_request(sandbox, grant_type="refresh_token", refresh_token=body["refresh_token"]).status_code
        == 400
    )


def test_lenient_rotation_keeps_old_refresh_token(sandbox_factory) -> None:
    server = sandbox_factory(strict_rotation=False)
    first = refresh(server, server.initial_refresh_token)
    again = refresh(server, server.initial_refresh_token)
    assert again["refresh_token"] != first["refresh_token"]
    assert server.current_refresh_token() == again["refresh_token"]


def test_token_endpoint_rejects_bad_requests(sandbox: SandboxServer) -> None:
    url = f"{sandbox.base_url}/v2/oauth/token/"
    as_json = requests.post(
        url,
        json={
            "client_key": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": sandbox.initial_refresh_token,
        },
        timeout=TIMEOUT,
    )
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    assert LOG_ID.match(as_json.json()["log_id"])

    bad_secret = requests.post(
        url,
        data={"client_key": sandbox.client_id, "client_secret": "nope", "grant_type": "refresh_token"},
        timeout=TIMEOUT,
    )
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    client_id_instead = requests.post(
        url, data={"client_id": sandbox.client_id, "client_secret": sandbox.client_secret}, timeout=TIMEOUT
    )
    assert client_id_instead.status_code == 400 and client_id_instead.json()["error"] == "invalid_request"

    assert token_request(sandbox).json()["error"] == "invalid_request"  # no grant_type
    assert token_request(sandbox, grant_type="password").json()["error"] == "unsupported_grant_type"
    assert token_request(sandbox, grant_type="refresh_token").json()["error"] == "invalid_request"
    unknown = token_request(sandbox, grant_type="refresh_token", refresh_token="rft.unknown")
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"
    assert sandbox.current_refresh_token() == sandbox.initial_refresh_token  # nothing rotated


def test_authorization_code_grant(sandbox: SandboxServer) -> None:
    code = sandbox.issue_authorization_code()
    resp = token_request(
        sandbox, grant_type="authorization_code", code=code, redirect_uri="https://x.test/cb"
    )
    assert resp.status_code == 200 and resp.json()["refresh_token"].startswith("rft.")
    assert sandbox.current_refresh_token() == resp.json()["refresh_token"]
    reused = token_request(sandbox, grant_type="authorization_code", code=code)
    assert reused.json()["error"] == "invalid_grant"

    bound = sandbox.issue_authorization_code(redirect_uri="https://x.test/cb")
    mismatch = token_request(
        sandbox, grant_type="authorization_code", code=bound, redirect_uri="https://y.test"
    )
    assert mismatch.json()["error"] == "invalid_grant"

    verifier = "v" * 50
    pkce = sandbox.issue_authorization_code(code_challenge=hashlib.sha256(verifier.encode()).hexdigest())
    assert (
        token_request(sandbox, grant_type="authorization_code", code=pkce, code_verifier="w" * 50).status_code
        == 400
    )
    pkce = sandbox.issue_authorization_code(code_challenge=hashlib.sha256(verifier.encode()).hexdigest())
    assert token_request(sandbox, grant_type="authorization_code", code=pkce, code_verifier=verifier).ok

    as_code = token_request(sandbox, grant_type="authorization_code", code=sandbox.initial_refresh_token)
    assert as_code.status_code == 200


def test_access_expiry_and_revocation(sandbox: SandboxServer) -> None:
    token = access_token(sandbox)
    assert user_info(sandbox, token, "open_id").status_code == 200
    sandbox.expire_access_tokens()
    expired = user_info(sandbox, token, "open_id")
    assert expired.status_code == 401 and error_code(expired) == "access_token_invalid"

    token = access_token(sandbox)
    rft = sandbox.current_refresh_token()
    sandbox.revoke_all_tokens()
    assert sandbox.current_refresh_token() is None
    assert user_info(sandbox, token, "open_id").status_code == 401
    assert (
        token_request(sandbox, grant_type="refresh_token", refresh_token=rft or "").json()["error"]
        == "invalid_grant"
    )


def test_revoke_endpoint_disconnects(sandbox: SandboxServer) -> None:
    token = access_token(sandbox)
    url = f"{sandbox.base_url}/v2/oauth/revoke/"
    no_secret = requests.post(url, data={"client_key": sandbox.client_id, "token": token}, timeout=TIMEOUT)
    assert no_secret.status_code == 400 and no_secret.json()["error"] == "invalid_request"
    ok = requests.post(
        url,
        data={"client_key": sandbox.client_id, "client_secret": sandbox.client_secret, "token": token},
        timeout=TIMEOUT,
    )
    assert ok.status_code == 200 and ok.json() == {}
    assert user_info(sandbox, token, "open_id").status_code == 401
    assert sandbox.current_refresh_token() is None
    assert sandbox.request_counts()["oauth_revoke"] == 2


def test_refresh_expiry_is_fixed_from_first_issuance(sandbox_factory) -> None:
    server = sandbox_factory(refresh_ttl_seconds=2)
    first = refresh(server, server.initial_refresh_token)
    assert first["refresh_expires_in"] <= 2
    time.sleep(1.2)
    second = refresh(server, first["refresh_token"])  # rotation does not extend the deadline...
    assert second["refresh_expires_in"] <= 1
    time.sleep(0.9)  # ...so it has passed now (a sliding window would last until ~3.2 s)
    late = token_request(server, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"
    assert server.current_refresh_token() is None

    other = sandbox_factory()
    other.expire_refresh_tokens()
    assert (
        token_request(
            other, grant_type="refresh_token", refresh_token=other.initial_refresh_token
        ).status_code
        == 400
    )


# ---- data endpoints --------------------------------------------------------------------------------
def test_bearer_required_and_envelope_shape(sandbox: SandboxServer) -> None:
    missing = requests.get(f"{sandbox.base_url}/v2/user/info/?fields=open_id", timeout=TIMEOUT)
    assert missing.status_code == 401 and error_code(missing) == "access_token_invalid"
    unknown = user_info(sandbox, "act.nope", "open_id")
    assert unknown.status_code == 401
    ok = user_info(sandbox, access_token(sandbox), "open_id")
    body = ok.json()
    assert body["error"]["code"] == "ok" and body["error"]["message"] == ""
    assert LOG_ID.match(body["error"]["log_id"]) and ok.headers["x-tt-logid"] == body["error"]["log_id"]
    assert ok.headers["Content-Type"] == "application/json"


def test_paging_returns_every_video_once_newest_first(sandbox: SandboxServer) -> None:
    truth = sandbox.videos()
    assert len(truth) == 120
    videos, pages = page_all(sandbox, access_token(sandbox))
    assert [v["id"] for v in videos] == [v["id"] for v in truth]
    times = [v["create_time"] for v in videos]
    assert times == sorted(times, reverse=True) and len(set(times)) == len(times)
    assert len(pages) == 6 and all(len(p["videos"]) == 20 for p in pages)
    for page in pages[:-1]:
        assert page["has_more"] is True
        assert page["cursor"] == page["videos"][-1]["create_time"] * 1000
        assert isinstance(page["cursor"], int)
    assert pages[-1]["has_more"] is False


def test_cursor_semantics(sandbox: SandboxServer) -> None:
    token = access_token(sandbox)
    truth = sandbox.videos()
    default = list_videos(sandbox, token).json()["data"]  # body {} -> max_count 10 from the top
    assert [v["id"] for v in default["videos"]] == [v["id"] for v in truth[:10]]

    pivot = truth[30]["create_time"] * 1000
    exact = list_videos(sandbox, token, {"cursor": pivot, "max_count": 5}).json()["data"]
    assert exact["videos"][0]["id"] == truth[31]["id"]  # strictly before the cursor
    inclusive = list_videos(sandbox, token, {"cursor": str(pivot + 1), "max_count": 5}).json()["data"]
    assert inclusive["videos"][0]["id"] == truth[30]["id"]  # string cursors are accepted
    top = list_videos(sandbox, token, {"cursor": 0, "max_count": 3}).json()["data"]
    assert [v["id"] for v in top["videos"]] == [v["id"] for v in truth[:3]]
    tail = list_videos(sandbox, token, {"cursor": truth[-1]["create_time"] * 1000}).json()["data"]
    assert tail == {"videos": [], "cursor": 0, "has_more": False}


def test_empty_account(sandbox_factory) -> None:
    server = sandbox_factory(video_count=0)
    token = access_token(server)
    assert list_videos(server, token).json()["data"] == {"videos": [], "cursor": 0, "has_more": False}
    counts = user_info(server, token, "video_count,likes_count").json()["data"]["user"]
    assert counts == {"video_count": 0, "likes_count": 0}


def test_fields_filtering_and_encoding(sandbox: SandboxServer) -> None:
    token = access_token(sandbox)
    videos = list_videos(sandbox, token, {"max_count": 3}, fields="id%2Ctitle").json()["data"]["videos"]
    assert [set(v) for v in videos] == [{"id", "title"}] * 3
    full = list_videos(sandbox, token, {"max_count": 20}, fields=ALL_VIDEO_FIELDS).json()["data"]["videos"]
    assert full == sandbox.videos()[:20]
    assert set(full[0]) == set(VIDEO_FIELDS)
    assert len(full[0]["id"]) == 19 and full[0]["id"].isdigit() and full[0]["id"].startswith("7")

    user = user_info(sandbox, token, "display_name,username").json()["data"]["user"]
    assert user == {"display_name": sandbox.user()["display_name"], "username": sandbox.user()["username"]}
    everything = user_info(sandbox, token, ",".join(USER_FIELD_SCOPES)).json()["data"]["user"]
    assert everything == sandbox.user() and len(everything) == 14
    assert everything["video_count"] == 120
    assert everything["likes_count"] == sum(v["like_count"] for v in sandbox.videos())


@pytest.mark.parametrize(
    ("endpoint", "fields", "body"),
    [
        ("list", "", {}),
        ("list", "id,fps", {}),
        ("list", "id", {"max_count": 0}),
        ("list", "id", {"max_count": 21}),
        ("list", "id", {"max_count": "many"}),
        ("list", "id", {"cursor": -5}),
        ("list", "id", "not json"),
        ("query", "id", {"filters": {"video_ids": [str(7 * 10**18 + i) for i in range(21)]}}),
        ("query", "id", {"filters": {"video_ids": []}}),
        ("query", "id", {"filters": {"video_ids": ["v_pub_url~abc"]}}),
        ("query", "id", {}),
        ("user", "", None),
        ("user", "open_id,email", None),
    ],
)
def test_invalid_params(sandbox: SandboxServer, endpoint: str, fields: str, body: Any) -> None:
    token = access_token(sandbox)
    headers = {"Authorization": f"Bearer {token}"}
    if endpoint == "user":
        resp = user_info(sandbox, token, fields)
    else:
        url = f"{sandbox.base_url}/v2/video/{endpoint}/?fields={fields}"
        raw = body if isinstance(body, str) else json.dumps(body)
        resp = requests.post(
            url, data=raw, headers={**headers, "Content-Type": "application/json"}, timeout=TIMEOUT
        )
    assert resp.status_code == 400
    assert error_code(resp) == "invalid_params"


def test_scope_enforcement(sandbox_factory) -> None:
    server = sandbox_factory(granted_scopes=("user.info.basic", "user.info.profile"))
    grant = refresh(server, server.initial_refresh_token)
    assert grant["scope"] == "user.info.basic,user.info.profile"
    token = grant["access_token"]
    assert user_info(server, token, "open_id,display_name,username").status_code == 200
    denied = user_info(server, token, "display_name,follower_count")
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "scope_not_authorized"
    assert denied.json()["error"]["message"] == (
        "The user did not authorize the scope required for completing this request."
    )
    assert set(denied.json()["error"]) == {"code", "message", "log_id"}
    assert list_videos(server, token).status_code == 401

    server.config.scope_error_code = "scope_permission_missed"
    alt = user_info(server, token, "follower_count")
    assert alt.status_code == 400 and error_code(alt) == "scope_permission_missed"


def test_query_drops_unknown_and_deleted_ids(sandbox: SandboxServer) -> None:
    token = access_token(sandbox)
    truth = sandbox.videos()
    ids = [truth[5]["id"], "1234567890123456789", truth[0]["id"]]
    data = query_videos(sandbox, token, ids, fields="id,view_count").json()["data"]
    assert data["cursor"] == 0 and data["has_more"] is False
    assert {v["id"] for v in data["videos"]} == {truth[5]["id"], truth[0]["id"]}
    assert all(set(v) == {"id", "view_count"} for v in data["videos"])
    sandbox.delete_video(truth[5]["id"])
    assert [v["id"] for v in query_videos(sandbox, token, ids).json()["data"]["videos"]] == [truth[0]["id"]]
    none = query_videos(sandbox, token, ["1234567890123456789"]).json()
    assert none["data"] == {"videos": [], "cursor": 0, "has_more": False} and none["error"]["code"] == "ok"


def test_missing_and_extra_fields(sandbox_factory) -> None:
    server = sandbox_factory(missing_field_every=10, extra_fields=True)
    truth = server.videos()
    assert sum(1 for v in truth if "video_description" not in v) >= 1
    assert sum(1 for v in truth if set(VIDEO_FIELDS) - set(v)) == 12
    assert all(v[EXTRA_FIELD_NAME] is True for v in truth)
    videos, _ = page_all(server, access_token(server))
    assert all(EXTRA_FIELD_NAME in v for v in videos)
    plain = sandbox_factory()
    assert all(set(v) == set(VIDEO_FIELDS) for v in plain.videos())


def test_data_is_deterministic_and_plausible(sandbox_factory) -> None:
    a = sandbox_factory(seed=3, anchor_time=1_780_000_000)
    b = sandbox_factory(seed=3, anchor_time=1_780_000_000)
    c = sandbox_factory(seed=4, anchor_time=1_780_000_000)
    assert a.videos() == b.videos() and a.user() == b.user() and a.client_id == b.client_id
    assert a.videos() != c.videos()
    videos = a.videos()
    assert all(v["view_count"] >= v["like_count"] >= 0 for v in videos)
    assert all(int(v["id"]) >> 32 == v["create_time"] for v in videos)
    span = videos[0]["create_time"] - videos[-1]["create_time"]
    assert 300 * 86400 < span < 3 * 365 * 86400 and videos[0]["create_time"] < 1_780_000_000
    user = a.user()
    assert not re.fullmatch(r"[0-9a-f-]{36}", user["open_id"]) and len(user["open_id"]) == 36
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", user["union_id"])


# ---- rate limit -------------------------------------------------------------------------------------
def test_rate_limit_sliding_window_and_recovery(sandbox_factory) -> None:
    server = sandbox_factory(rate_limit=3, rate_window_seconds=1.0)
    token = access_token(server)
    assert [user_info(server, token, "open_id").status_code for _ in range(3)] == [200] * 3
    limited = user_info(server, token, "open_id")
    assert limited.status_code == 429 and error_code(limited) == "rate_limit_exceeded"
    assert "Retry-After" not in limited.headers
    assert list_videos(server, token).status_code == 200  # per endpoint
    time.sleep(1.05)
    assert user_info(server, token, "open_id").status_code == 200

    server.set_faults(Faults(retry_after_seconds=0.5))
    for _ in range(3):
        user_info(server, token, "open_id")
    assert user_info(server, token, "open_id").headers["Retry-After"] == "0.5"


def test_rate_limit_per_token(sandbox_factory) -> None:
    server = sandbox_factory(rate_limit=2, rate_window_seconds=5, rate_limit_scope="token")
    first, second = access_token(server), access_token(server)
    assert [user_info(server, first, "open_id").status_code for _ in range(3)] == [200, 200, 429]
    assert user_info(server, second, "open_id").status_code == 200


# ---- faults -------------------------------------------------------------------------------------------
def test_every_nth_counter_is_global_across_token_and_data(sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(status_500_every=2))
    grant = token_request(sandbox, grant_type="refresh_token", refresh_token=sandbox.initial_refresh_token)
    assert grant.status_code == 200  # request 1
    token = grant.json()["access_token"]
    failed = user_info(sandbox, token, "open_id")  # request 2
    assert failed.status_code == 500 and error_code(failed) == "internal_error"
    assert user_info(sandbox, token, "open_id").status_code == 200  # 3
    rotated = sandbox.current_refresh_token() or ""
    oauth_fail = token_request(sandbox, grant_type="refresh_token", refresh_token=rotated)  # 4
    assert oauth_fail.status_code == 500 and oauth_fail.json()["error"] == "server_error"
    assert sandbox.current_refresh_token() == rotated  # an injected failure never rotates
    assert sandbox.status_counts() == {200: 2, 500: 2}
    assert sandbox.request_counts() == {"oauth_token": 2, "user_info": 2, "video_list": 0, "video_query": 0}
    sandbox.reset_counts()
    assert sandbox.status_counts() == {} and sum(sandbox.request_counts().values()) == 0


def test_injected_429_envelope_200_and_undecodable(sandbox: SandboxServer) -> None:
    token = access_token(sandbox)
    sandbox.set_faults(Faults(status_429_every=3, retry_after_seconds=1, error_envelope_200_every=2))
    statuses = [user_info(sandbox, token, "open_id") for _ in range(4)]
    assert statuses[0].status_code == 200 and error_code(statuses[0]) == "ok"
    assert statuses[1].status_code == 200 and error_code(statuses[1]) == "internal_error"
    assert statuses[2].status_code == 429 and statuses[2].headers["Retry-After"] == "1"
    assert statuses[3].status_code == 200 and error_code(statuses[3]) == "internal_error"

    sandbox.set_faults(Faults(undecodable_every=1))
    broken = list_videos(sandbox, token)
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()


def test_stall_trips_client_timeout(sandbox: SandboxServer) -> None:
    token = access_token(sandbox)
    sandbox.set_faults(Faults(stall_every=2, stall_seconds=0.4))
    assert user_info(sandbox, token, "open_id").status_code == 200
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(
            f"{sandbox.base_url}/v2/user/info/?fields=open_id",
            headers={"Authorization": f"Bearer {token}"},
            timeout=0.1,
        )
    started = time.monotonic()
    assert user_info(sandbox, token, "open_id").status_code == 200
    assert time.monotonic() - started < 0.3


def test_latency_applies_to_every_request(sandbox_factory) -> None:
    server = sandbox_factory(latency_ms=60)
    started = time.monotonic()
    token = access_token(server)
    user_info(server, token, "open_id")
    assert time.monotonic() - started >= 0.12


def test_short_pages_lose_nothing(sandbox_factory) -> None:
    server = sandbox_factory(video_count=400, faults=Faults(short_pages=True))
    token = access_token(server)
    videos, pages = page_all(server, token)
    assert [v["id"] for v in videos] == [v["id"] for v in server.videos()]
    short = [p for p in pages if p["has_more"] and len(p["videos"]) < 20]
    assert short and len(pages) > 20
    empties = [i for i, p in enumerate(pages) if not p["videos"] and p["has_more"]]
    assert empties, "expected at least one empty page with has_more"
    for i in empties:
        assert pages[i]["cursor"] == pages[i - 1]["cursor"]  # unchanged cursor
        assert pages[i + 1]["videos"]  # never two empty pages in a row for one cursor
    assert pages[0]["videos"]


def test_invalidate_access_after_forces_refresh(sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(invalidate_access_after=3))
    token = access_token(sandbox)
    assert [list_videos(sandbox, token).status_code for _ in range(3)] == [200] * 3
    dead = list_videos(sandbox, token)
    assert dead.status_code == 401 and error_code(dead) == "access_token_invalid"
    assert list_videos(sandbox, access_token(sandbox)).status_code == 200


def test_stop_refuses_connections_and_start_resumes(sandbox: SandboxServer) -> None:
    token = access_token(sandbox)
    session = requests.Session()
    url = f"{sandbox.base_url}/v2/user/info/?fields=open_id"
    headers = {"Authorization": f"Bearer {token}"}
    assert session.get(url, headers=headers, timeout=TIMEOUT).status_code == 200
    base = sandbox.base_url
    sandbox.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(url, headers=headers, timeout=TIMEOUT)
    sandbox.start()
    assert sandbox.base_url == base
    assert session.get(url, headers=headers, timeout=TIMEOUT).status_code == 200  # state kept


# ---- mutations and admin ---------------------------------------------------------------------------
def test_mutations_follow_through_api(sandbox: SandboxServer) -> None:
    token = access_token(sandbox)
    before = sandbox.videos()
    added = sandbox.add_videos(3)
    assert len(added) == 3 and added[0]["create_time"] > added[1]["create_time"] > before[0]["create_time"]
    assert [v["id"] for v in sandbox.videos()[:3]] == [v["id"] for v in added]
    top = list_videos(sandbox, token, {"max_count": 3}).json()["data"]["videos"]
    assert [v["id"] for v in top] == [v["id"] for v in added]

    collide = sandbox.add_videos(2, create_time=before[10]["create_time"])
    times = [v["create_time"] for v in sandbox.videos()]
    assert len(set(times)) == len(times) == 125
    assert {v["id"] for v in collide} <= {v["id"] for v in sandbox.videos()}

    sandbox.delete_video(before[0]["id"])
    assert before[0]["id"] not in {v["id"] for v in page_all(sandbox, token)[0]}
    with pytest.raises(KeyError):
        sandbox.delete_video(before[0]["id"])

    target = before[20]
    assert sandbox.bump_counters([target["id"]]) == [target["id"]]
    bumped = next(v for v in sandbox.videos() if v["id"] == target["id"])
    assert bumped["view_count"] > target["view_count"] and bumped["view_count"] >= bumped["like_count"]
    changed = sandbox.bump_counters(fraction=0.1)
    assert len(changed) == 12 and len(set(changed)) == 12

    stats = user_info(sandbox, token, "video_count,likes_count").json()["data"]["user"]
    assert stats == {"video_count": 124, "likes_count": sum(v["like_count"] for v in sandbox.videos())}


def test_admin_endpoints(sandbox: SandboxServer) -> None:
    base = f"{sandbox.base_url}/_sandbox"
    state = requests.get(f"{base}/state", timeout=TIMEOUT).json()
    assert state["video_count"] == 120 and state["client_id"] == sandbox.client_id
    assert sandbox.client_secret not in json.dumps(state) and sandbox.initial_refresh_token not in json.dumps(
        state
    )

    added = requests.post(f"{base}/add_videos", json={"count": 2}, timeout=TIMEOUT).json()
    assert added["video_count"] == 122 and added["added"] == [v["id"] for v in sandbox.videos()[:2]]
    changed = requests.post(f"{base}/bump_counters", json={"fraction": 0.05}, timeout=TIMEOUT).json()[
        "changed"
    ]
    assert len(changed) == 6
    deleted = requests.post(f"{base}/delete_video", json={"id": added["added"][0]}, timeout=TIMEOUT)
    assert deleted.json()["video_count"] == 121
    assert requests.post(f"{base}/delete_video", json={"id": "1"}, timeout=TIMEOUT).status_code == 404
    faults = requests.post(f"{base}/faults", json={"status_500_every": 1}, timeout=TIMEOUT).json()
    assert faults["faults"]["status_500_every"] == 1 and sandbox.config.faults.status_500_every == 1
    assert requests.get(f"{base}/nope", timeout=TIMEOUT).status_code == 404
    assert sum(sandbox.request_counts().values()) == 0  # admin traffic is not counted


# ---- CLI and scale -----------------------------------------------------------------------------------
def test_cli_prints_one_json_line_and_writes_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "sandbox.env"
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tiktok_organic_dagster.sandbox",
            "--port",
            "0",
            "--videos",
            "25",
            "--seed",
            "5",
            "--env-file",
            str(env_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert set(info) == {"base_url", "client_id", "videos"} and info["videos"] == 25
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert env["TIKTOK_API_BASE_URL"] == info["base_url"] and env["TIKTOK_CLIENT_ID"] == info["client_id"]
        resp = requests.post(
            f"{info['base_url']}/v2/oauth/token/",
            data={
                "client_key": env["TIKTOK_CLIENT_ID"],
                "client_secret": env["TIKTOK_CLIENT_SECRET"],
                "grant_type": "refresh_token",
                "refresh_token": env["TIKTOK_REFRESH_TOKEN"],
            },
            timeout=TIMEOUT,
        )
        assert resp.status_code == 200
        assert requests.get(f"{info['base_url']}/_sandbox/state", timeout=TIMEOUT).json()["video_count"] == 25
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
    assert proc.stdout.read() == ""  # exactly one line


def test_generating_100k_videos() -> None:
    """A 100k-video account is generated whole (its speed is the benchmarks' business, not a timed test's)."""
    server = SandboxServer(SandboxConfig(video_count=100_000))
    state = server.state()
    assert state["video_count"] == 100_000 and state["base_url"] is None
