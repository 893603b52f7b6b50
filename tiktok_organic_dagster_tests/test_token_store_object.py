"""Token store on S3 (moto_server subprocess, fixtures_s3) with the sandbox over real HTTP: strict rotation
across runs that keep no local state, lost races, encryption at rest, and the authorize CLI.

moto checks a PutObject precondition without a lock, so no verdict here rests on moto's atomicity: the races
are injected at a chosen moment (a second writer acts inside our read-refresh-write), one step at a time.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import replace

import pytest
from cryptography.fernet import Fernet

from tiktok_organic_dagster.cli.authorize import main as authorize
from tiktok_organic_dagster.names import REFRESH_TOKEN_ENV, TOKEN_STORE_ENV, TOKEN_STORE_KEY_ENV
from tiktok_organic_dagster.tiktok.client import TikTokClient
from tiktok_organic_dagster.tiktok.errors import ReauthorizationRequired, TokenStoreError
from tiktok_organic_dagster.tiktok.token_backends import StoreConflict
from tiktok_organic_dagster.tiktok.token_store_object import ObjectTokenStore
from tiktok_organic_dagster_tests.fixtures_s3 import S3Server
from tiktok_organic_dagster_tests.fresh_run import enter_fresh_run, files_under

KEY = "tiktok_organic"
FIELDS = ["id", "create_time", "view_count"]
REDIRECT = "https://example.com/cb"


@pytest.fixture
def url(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh token prefix on moto; no key, no DAGSTER_HOME, no env refresh token unless a test sets them."""
    for name in (TOKEN_STORE_KEY_ENV, "DAGSTER_HOME", REFRESH_TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)
    return f"{s3_root}/tokens/"


def make_client(server, url: str | None, refresh_token: str | None = None) -> TikTokClient:
    return TikTokClient(client_id=server.client_id, client_secret=server.client_secret,
                        refresh_token=server.initial_refresh_token if refresh_token is None else refresh_token,
                        api_base_url=server.base_url, token_store_path=url, backoff_base_seconds=0.01,
                        request_timeout_seconds=5.0)


def raw_object(s3: S3Server, url: str, key: str = KEY) -> bytes:
    name = url.removeprefix(f"s3://{s3.bucket}/") + f"{key}.json"
    return s3.client().get_object(Bucket=s3.bucket, Key=name)["Body"].read()


def plain_entry(s3: S3Server, url: str) -> dict:
    return json.loads(raw_object(s3, url))["entry"]


def listed(client: TikTokClient) -> int:
    return sum(len(page) for page in client.iter_video_pages(FIELDS))


def on_first_call(store: ObjectTokenStore, method: str, action, monkeypatch, after: bool = False) -> list[int]:
    """Run ``action`` once, right before (or after) the first call of ``store.<method>``; counts calls."""
    real = getattr(store, method)
    calls: list[int] = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1 and not after:
            action()
        result = real(*args, **kwargs)
        if len(calls) == 1 and after:
            action()
        return result

    monkeypatch.setattr(store, method, wrapped)
    return calls


def test_object_store_strict_rotation_over_ten_runs_without_local_state(sandbox_factory, s3_server, url,
                                                                        tmp_path, monkeypatch):
    """Ten runs, each in a new working directory and HOME (a container's disk is gone after its run), the
    store found through TIKTOK_TOKEN_STORE: each run refreshes with the token the previous run rotated."""
    server = sandbox_factory(video_count=30)
    monkeypatch.setenv(TOKEN_STORE_ENV, url)
    for run in range(10):
        workdir = enter_fresh_run(tmp_path, run, monkeypatch)
        if run:
            assert plain_entry(s3_server, url)["refresh_token"] == server.current_refresh_token()
            server.expire_access_tokens()  # a day passes: the stored access token is rejected (401)
        previous = server.current_refresh_token()
        with make_client(server, None) as client:
            assert listed(client) == 30
            assert client.stats.refreshes == 1
        stored = plain_entry(s3_server, url)
        assert stored["refresh_token"] == server.current_refresh_token() != previous
        assert files_under(workdir) == []  # nothing in the working directory or HOME
    assert server.request_counts()["oauth_token"] == 10
    # The rotation was strict: the first token (still in the environment) is dead without the store.
    with pytest.raises(ReauthorizationRequired):
        make_client(server, url.replace("/tokens/", "/elsewhere/")).user_info(["open_id"])


def test_object_store_lost_race_keeps_the_newer_token(sandbox_factory, s3_server, url, monkeypatch):
    """Between our read and our write another writer stores a newer grant: our write fails its If-Match, we
    re-read, keep the newer token (not overwritten) and use it."""
    server = sandbox_factory(video_count=5)
    make_client(server, url).user_info(["open_id"])  # seeds the store
    server.expire_access_tokens()
    other: dict = {}

    def authorize_elsewhere() -> None:
        with make_client(server, url, refresh_token="") as second:
            other["entry"] = second.exchange_authorization_code(server.issue_authorization_code(), REDIRECT)

    client = make_client(server, url)
    writes = on_first_call(client._rt().store, "write", authorize_elsewhere, monkeypatch)
    assert client.user_info(["open_id"])["open_id"] == server.user()["open_id"]
    newer = other["entry"]
    assert len(writes) == 1  # the conflict was not retried over the newer entry
    assert plain_entry(s3_server, url)["refresh_token"] == newer.refresh_token == server.current_refresh_token()
    assert client._rt().tokens.entry().access_token == newer.access_token  # the newer one is in use
    # The next run carries on from it (after an authorization the environment token is left empty).
    assert make_client(server, url, refresh_token="").user_info(["open_id"])


def test_object_store_conflict_on_the_spent_token_stores_ours(sandbox_factory, s3_server, url, monkeypatch):
    """The other writer rewrote the entry but kept the refresh token we just spent (say, an admin tool that
    expires access tokens): TikTok rotated it for us, so ours is the only valid one and goes over it."""
    server = sandbox_factory(video_count=5)
    make_client(server, url).user_info(["open_id"])
    server.expire_access_tokens()
    second = ObjectTokenStore(url)

    def rewrite_spent() -> None:
        entry = second.get(KEY)
        second.put(KEY, replace(entry, access_refresh_after=0.0, access_expires_at=0.0))

    client = make_client(server, url)
    writes = on_first_call(client._rt().store, "write", rewrite_spent, monkeypatch)
    client.user_info(["open_id"])
    assert len(writes) == 2  # conflict, then the write over the version just seen
    assert plain_entry(s3_server, url)["refresh_token"] == server.current_refresh_token()
    assert make_client(server, url).user_info(["open_id"])


def test_object_store_write_whose_answer_was_lost_counts_as_stored(sandbox_factory, s3_server, url, monkeypatch):
    """A conditional PUT that landed but whose answer was lost (the retry then fails its condition): the
    re-read finds our own token, and we neither refresh again nor give up."""
    server = sandbox_factory(video_count=5)
    client = make_client(server, url)
    store = client._rt().store
    real = store.write

    def landed_then_conflict(key, entry, expected):
        real(key, entry, expected)
        raise StoreConflict("answer lost")

    monkeypatch.setattr(store, "write", landed_then_conflict)
    client.user_info(["open_id"])
    assert client.stats.refreshes == 1 and server.request_counts()["oauth_token"] == 1
    assert plain_entry(s3_server, url)["refresh_token"] == server.current_refresh_token()


def test_object_store_invalid_grant_after_another_run_rotated_rereads(sandbox_factory, s3_server, url,
                                                                      monkeypatch):
    """No lock on an object store: two runs read the same entry, the other one rotates first, so TikTok
    answers invalid_grant to us. We re-read, find the newer token the other run stored, and use it."""
    server = sandbox_factory(video_count=5)
    make_client(server, url).user_info(["open_id"])
    server.expire_access_tokens()
    second = ObjectTokenStore(url)
    entry = second.get(KEY)
    second.put(KEY, replace(entry, access_refresh_after=0.0))  # both runs will refresh at once
    other = make_client(server, url)
    client = make_client(server, url)
    on_first_call(client._rt().store, "read", lambda: other.user_info(["open_id"]), monkeypatch, after=True)
    assert client.user_info(["open_id"])["open_id"] == server.user()["open_id"]
    assert other.stats.refreshes == 1 and client.stats.refreshes == 0
    assert client.stats.requests["oauth_token"] == 1  # the refresh TikTok refused
    assert plain_entry(s3_server, url)["refresh_token"] == server.current_refresh_token()


def test_object_store_encrypted_holds_no_secret_and_wrong_key_changes_nothing(sandbox_factory, s3_server, url,
                                                                             monkeypatch):
    server = sandbox_factory(video_count=5)
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(TOKEN_STORE_KEY_ENV, key)
    make_client(server, url).user_info(["open_id"])
    server.expire_access_tokens()
    make_client(server, url).user_info(["open_id"])  # a second rotation, written encrypted as well
    blob = raw_object(s3_server, url)
    secrets = [server.client_secret, server.initial_refresh_token, *server.issued_tokens()]
    assert len(secrets) >= 5
    assert [s for s in secrets if s.encode() in blob] == []
    assert b"rft." not in blob and b"act." not in blob
    entry = json.loads(Fernet(key).decrypt(json.loads(blob)["entry"]["ciphertext"].encode()))
    assert entry["refresh_token"] == server.current_refresh_token()

    server.expire_access_tokens()  # a run now would have to refresh, i.e. spend the stored token
    tokens_before = server.request_counts()["oauth_token"]
    for value, says in ((Fernet.generate_key().decode(), "wrong key"), (None, "is not set")):
        if value is None:
            monkeypatch.delenv(TOKEN_STORE_KEY_ENV)
        else:
            monkeypatch.setenv(TOKEN_STORE_KEY_ENV, value)
        with pytest.raises(TokenStoreError) as info:
            listed(make_client(server, url))
        text = str(info.value)
        assert TOKEN_STORE_KEY_ENV in text and says in text and f"{KEY}.json" in text
        assert [s for s in secrets if s in text] == []
        assert raw_object(s3_server, url) == blob  # nothing written
    assert server.request_counts()["oauth_token"] == tokens_before  # nothing spent
    assert server.current_refresh_token() == entry["refresh_token"]
    monkeypatch.setenv(TOKEN_STORE_KEY_ENV, f"{Fernet.generate_key().decode()},{key}")  # key rotation
    assert listed(make_client(server, url)) == 5
    assert raw_object(s3_server, url) != blob  # the rotation was written with the new first key


def test_object_store_plain_entry_with_key_is_encrypted_at_next_write(sandbox_factory, s3_server, url,
                                                                      monkeypatch, caplog):
    server = sandbox_factory(video_count=5)
    make_client(server, url).user_info(["open_id"])
    monkeypatch.setenv(TOKEN_STORE_KEY_ENV, Fernet.generate_key().decode())
    caplog.set_level(logging.INFO, logger="tiktok_organic_dagster.tiktok")
    make_client(server, url).user_info(["open_id"])  # access token still valid: read only
    assert "stored in clear" in caplog.text and TOKEN_STORE_KEY_ENV in caplog.text
    assert server.current_refresh_token().encode() in raw_object(s3_server, url)  # not rewritten by a read
    server.expire_access_tokens()
    make_client(server, url).user_info(["open_id"])
    assert "encrypted" in plain_entry(s3_server, url)
    assert server.current_refresh_token().encode() not in raw_object(s3_server, url)


def test_authorize_writes_the_object_store_entry(sandbox_factory, s3_server, url, monkeypatch):
    server = sandbox_factory(video_count=5)
    monkeypatch.setenv("TIKTOK_CLIENT_SECRET", server.client_secret)
    monkeypatch.setenv(TOKEN_STORE_KEY_ENV, Fernet.generate_key().decode())
    argv = ["--client-id", server.client_id, "--redirect-uri", REDIRECT, "--api-base-url", server.base_url,
            "--token-store", url, "--key", "acct_b"]
    code = server.issue_authorization_code()
    with monkeypatch.context() as bad:
        bad.setenv(TOKEN_STORE_KEY_ENV, "not-a-fernet-key")
        assert authorize([*argv, f"--code={code}"], stdout=io.StringIO()) == 2  # checked before the exchange
    out = io.StringIO()
    assert authorize([*argv, f"--code={code}"], stdout=out) == 0  # so the single-use code still works
    printed = out.getvalue()
    assert f"{url}acct_b.json" in printed and "encrypted with TIKTOK_TOKEN_STORE_KEY" in printed
    assert f"TIKTOK_TOKEN_STORE={url}" in printed
    assert server.current_refresh_token().encode() not in raw_object(s3_server, url, "acct_b")
    client = make_client(server, url, refresh_token="")
    client.token_store_key = "acct_b"
    assert client.user_info(["open_id"])["open_id"] == server.user()["open_id"]
    assert client.stats.requests["oauth_token"] == 0  # the stored access token was used as it is


def test_object_store_missing_bucket_fails_before_spending_the_token(sandbox_factory, s3_server, url):
    """A missing bucket is not an empty store: refreshing would spend the token with nowhere to keep the new one."""
    server = sandbox_factory(video_count=5)
    wrong = url.replace(f"s3://{s3_server.bucket}/", "s3://no-such-bucket-for-tokens/")
    with pytest.raises(TokenStoreError, match="bucket/container does not exist"):
        make_client(server, wrong).user_info(["open_id"])
    assert server.request_counts()["oauth_token"] == 0
    assert make_client(server, url).user_info(["open_id"])  # the environment's token is still good
