"""Token store file handling and the token lifecycle (rotation, env vs store, expiry, concurrency)."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from urllib.parse import parse_qs

import pytest
import responses

from tiktok_organic_dagster.tiktok.client import TikTokClient
from tiktok_organic_dagster.tiktok.errors import ReauthorizationRequired, TokenStoreError
from tiktok_organic_dagster.tiktok.token_store import TokenStore, default_store_path
from tiktok_organic_dagster.tiktok.tokens import TokenEntry, TokenManager, entry_from_token_response, hash_token
from tiktok_organic_dagster_tests.helpers import expire_access_tokens

BASE = "https://open.tiktokapis.com"
TOKEN_URL = f"{BASE}/v2/oauth/token/"
USER_URL = f"{BASE}/v2/user/info/"
USER_OK = {"data": {"user": {"open_id": "o"}}, "error": {"code": "ok", "message": ""}}


class FakeOAuth:
    """Strict-rotation token endpoint as a `responses` callback; remembers every refresh token it saw."""

    def __init__(self, expires_in: int = 86400) -> None:
        self.n = 0
        self.seen: list[str] = []
        self.valid = {"rft.env-0"}
        self.expires_in = expires_in

    def __call__(self, request):
        form = {k: v[0] for k, v in parse_qs(request.body).items()}
        token = form.get("refresh_token", "")
        self.seen.append(token)
        if token not in self.valid:
            body = {"error": "invalid_grant", "error_description": "expired", "log_id": "L"}
            return 400, {}, json.dumps(body)
        self.valid.discard(token)
        self.n += 1
        new = f"rft.rotated-{self.n}"
        self.valid.add(new)
        return 200, {}, json.dumps({"access_token": f"act.access-{self.n}", "refresh_token": new,
                                    "expires_in": self.expires_in, "refresh_expires_in": 86400 * 10,
                                    "open_id": "o", "scope": "user.info.basic,video.list"})


@pytest.fixture
def oauth():
    fake = FakeOAuth()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rs:
        rs.add_callback(responses.POST, TOKEN_URL, callback=fake)
        rs.get(USER_URL, json=USER_OK)
        yield fake


def client(tmp_path, refresh_token: str = "rft.env-0", **kw) -> TikTokClient:
    return TikTokClient(client_id="ck", client_secret="cs-store", refresh_token=refresh_token,
                        token_store_path=str(tmp_path / "store" / "tokens.json"), backoff_base_seconds=0.01,
                        **kw)


def stored(tmp_path, key: str = "tiktok_organic") -> dict:
    return json.loads((tmp_path / "store" / "tokens.json").read_text())["entries"][key]


def test_token_rotation_persisted_and_reused_across_instances(tmp_path, oauth):
    first = client(tmp_path)
    first.user_info(["open_id"])
    entry = stored(tmp_path)
    assert entry["refresh_token"] == "rft.rotated-1" and entry["access_token"] == "act.access-1"
    assert entry["descends_from"] == hash_token("rft.env-0")  # hash, never the value
    assert entry["scopes"] == ["user.info.basic", "video.list"] and entry["open_id"] == "o"
    now = time.time()
    assert entry["access_expires_at"] == pytest.approx(now + 86400, abs=5)
    assert entry["refresh_expires_at"] == pytest.approx(now + 86400 * 10, abs=5)
    assert entry["access_refresh_after"] == pytest.approx(entry["access_expires_at"] - 60, abs=0.01)

    second = client(tmp_path)  # same env token: the stored rotated lineage wins, access token reused
    second.user_info(["open_id"])
    assert oauth.n == 1 and second.stats.requests["oauth_token"] == 0
    assert second.refresh_token_days_left() == pytest.approx(10, abs=0.01)

    # Access token expires: the next instance refreshes with the *rotated* token, not the env one.
    data = json.loads((tmp_path / "store" / "tokens.json").read_text())
    data["entries"]["tiktok_organic"]["access_refresh_after"] = time.time() - 1
    (tmp_path / "store" / "tokens.json").write_text(json.dumps(data))
    third = client(tmp_path)
    third.user_info(["open_id"])
    assert oauth.seen == ["rft.env-0", "rft.rotated-1"]
    assert stored(tmp_path)["refresh_token"] == "rft.rotated-2"
    assert stored(tmp_path)["descends_from"] == hash_token("rft.env-0")


def test_token_new_env_token_wins_over_store(tmp_path, oauth):
    client(tmp_path).user_info(["open_id"])
    oauth.valid.add("rft.user-pasted-new")
    fresh = client(tmp_path, refresh_token="rft.user-pasted-new")
    fresh.user_info(["open_id"])
    assert oauth.seen[-1] == "rft.user-pasted-new"  # environment won, stored access token not reused
    assert stored(tmp_path)["descends_from"] == hash_token("rft.user-pasted-new")
    # Next run with that same env value: store wins again (no token request).
    again = client(tmp_path, refresh_token="rft.user-pasted-new")
    again.user_info(["open_id"])
    assert again.stats.requests["oauth_token"] == 0


def test_token_empty_env_uses_store_and_missing_both_requires_reauth(tmp_path, oauth):
    with pytest.raises(ReauthorizationRequired, match="tiktok-organic-authorize") as info:
        client(tmp_path, refresh_token="").user_info(["open_id"])
    assert "TIKTOK_REFRESH_TOKEN" in str(info.value)
    assert oauth.seen == []  # nothing to send
    client(tmp_path).user_info(["open_id"])
    only_store = client(tmp_path, refresh_token="")
    only_store.user_info(["open_id"])
    assert only_store.stats.requests["oauth_token"] == 0


def test_token_env_equal_to_current_stored_token_keeps_lineage(tmp_path, oauth):
    client(tmp_path).user_info(["open_id"])  # store now holds rft.rotated-1
    c = client(tmp_path, refresh_token="rft.rotated-1")  # user copied the current stored token
    c._rt().tokens.invalidate("act.access-1")  # force a refresh
    assert oauth.seen[-1] == "rft.rotated-1"
    assert stored(tmp_path)["descends_from"] == hash_token("rft.rotated-1")
    # After the rotation the env value no longer matches the stored token but is the recorded lineage.
    c2 = client(tmp_path, refresh_token="rft.rotated-1")
    c2.user_info(["open_id"])
    assert c2.stats.requests["oauth_token"] == 0


def test_token_invalid_grant_with_env_over_store_hints_unset(tmp_path, oauth):
    client(tmp_path).user_info(["open_id"])
    with pytest.raises(ReauthorizationRequired) as info:
        client(tmp_path, refresh_token="rft.stale-old", refresh_token_env="ACME_RT").user_info(["open_id"])
    text = str(info.value)
    assert "unset ACME_RT" in text and "re-authorize" in text.lower() and "rft.stale-old" not in text
    assert oauth.seen[-1] == "rft.stale-old"


def test_token_threads_share_one_refresh(tmp_path, oauth):
    c = client(tmp_path)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            c.user_info(["open_id"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and oauth.n == 1 and c.stats.refreshes == 1


def test_token_store_file_mode_atomic_and_other_entries_kept(tmp_path, oauth):
    path = tmp_path / "store" / "tokens.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"version": 1, "entries": {"other": {"refresh_token": "rft.other-acct"}}}))
    os.chmod(path, 0o644)
    client(tmp_path).user_info(["open_id"])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(path) + ".lock").st_mode) == 0o600
    # no temp files left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokens.json", "tokens.json.lock"]
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and set(doc["entries"]) == {"other", "tiktok_organic"}
    assert doc["entries"]["other"]["refresh_token"] == "rft.other-acct"
    assert "rft.env-0" not in path.read_text()  # the env token's value is never stored, only its hash
    # A pre-existing world-readable file is fixed on read too.
    os.chmod(path, 0o644)
    TokenStore(path).read_all()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_token_store_failed_write_leaves_no_temp_and_old_content(tmp_path, monkeypatch):
    store = TokenStore(tmp_path / "t.json")
    store.put("a", TokenEntry(refresh_token="rft.first-one"))

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.put("a", TokenEntry(refresh_token="rft.second-one"))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]
    assert store.get("a").refresh_token == "rft.first-one"


def test_token_store_corrupt_file_raises_without_content(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"entries": {"a": {"refresh_token": "rft.leaky-secret"')
    with pytest.raises(TokenStoreError) as info:
        TokenStore(path).get("a")
    assert "rft.leaky-secret" not in str(info.value) and str(path) in str(info.value)


def test_token_default_store_path(monkeypatch, tmp_path):
    monkeypatch.delenv("TIKTOK_TOKEN_STORE", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_store_path() == tmp_path / ".tiktok_tokens.json"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    assert default_store_path() == tmp_path / "dh" / "tiktok_token_store.json"
    monkeypatch.setenv("TIKTOK_TOKEN_STORE", str(tmp_path / "x.json"))
    assert default_store_path() == tmp_path / "x.json"
    assert default_store_path(str(tmp_path / "y.json")) == tmp_path / "y.json"


def test_token_refresh_margin_follows_response_lifetime():
    long = entry_from_token_response({"access_token": "act.a1234567", "refresh_token": "rft.b1234567",
                                      "expires_in": 7200}, now=1000.0, descends_from=None)
    assert long.access_expires_at == 8200.0 and long.access_refresh_after == 8140.0  # 60 s margin
    short = entry_from_token_response({"access_token": "act.a1234567", "expires_in": 100}, now=1000.0,
                                      descends_from=None, previous=long)
    assert short.access_refresh_after == 1090.0  # 10% of a short lifetime
    assert short.refresh_token == "rft.b1234567"  # not rotated -> keep the previous one


def test_token_manager_refreshes_shortly_before_expiry(tmp_path):
    now = [1000.0]
    sent: list[str] = []

    def post(form):
        sent.append(form["refresh_token"])
        n = len(sent)
        return {"access_token": f"act.tok-{n}", "refresh_token": f"rft.r-{n}", "expires_in": 100}

    mgr = TokenManager(TokenStore(tmp_path / "t.json"), "k", "rft.r-0", post, clock=lambda: now[0])
    assert mgr.access_token() == "act.tok-1"
    now[0] = 1089.0
    assert mgr.access_token() == "act.tok-1"  # still before the 10 s margin
    now[0] = 1090.5
    assert mgr.access_token() == "act.tok-2"
    assert sent == ["rft.r-0", "rft.r-1"]
    assert repr(mgr.entry()).find("rft.") == -1  # repr never shows tokens


def test_expire_access_tokens_keeps_every_refresh_token(tmp_path):
    store = TokenStore(tmp_path / "t.json")
    later = time.time() + 3600
    for key in ("a", "b"):
        store.put(key, TokenEntry(refresh_token=f"rft.{key}-one", access_token=f"act.{key}",
                                  access_expires_at=later, access_refresh_after=later))
    assert store.get("a").access_fresh(time.time())
    expire_access_tokens(store.path)
    for key in ("a", "b"):
        entry = store.get(key)
        assert entry.refresh_token == f"rft.{key}-one" and not entry.access_fresh(time.time())
