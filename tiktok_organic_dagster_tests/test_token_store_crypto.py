"""Encryption at rest in the local token file, the store interface's version check, and which backend a
location selects (local path, file://, s3://, gs://, az://, abfss://; unsupported schemes refused)."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest
from cryptography.fernet import Fernet

from tiktok_organic_dagster.names import REFRESH_TOKEN_ENV, TOKEN_STORE_ENV, TOKEN_STORE_KEY_ENV
from tiktok_organic_dagster.tiktok.client import TikTokClient
from tiktok_organic_dagster.tiktok.errors import TokenStoreError
from tiktok_organic_dagster.tiktok.object_store_env import client_options
from tiktok_organic_dagster.tiktok.token_backends import StoreConflict
from tiktok_organic_dagster.tiktok.token_crypto import EntryCodec
from tiktok_organic_dagster.tiktok.token_store import TokenStore, open_token_store, store_location
from tiktok_organic_dagster.tiktok.token_store_object import ObjectTokenStore
from tiktok_organic_dagster.tiktok.tokens import TokenEntry

KEY = "tiktok_organic"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (TOKEN_STORE_KEY_ENV, TOKEN_STORE_ENV, "DAGSTER_HOME", REFRESH_TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)


def make_client(server, path) -> TikTokClient:
    return TikTokClient(client_id=server.client_id, client_secret=server.client_secret,
                        refresh_token=server.initial_refresh_token, api_base_url=server.base_url,
                        token_store_path=str(path), backoff_base_seconds=0.01)


def test_local_encrypted_file_holds_no_secret_and_wrong_key_changes_nothing(sandbox_factory, tmp_path,
                                                                           monkeypatch):
    server = sandbox_factory(video_count=5)
    path = tmp_path / "tokens.json"
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(TOKEN_STORE_KEY_ENV, key)
    make_client(server, path).user_info(["open_id"])
    server.expire_access_tokens()
    make_client(server, path).user_info(["open_id"])
    blob = path.read_bytes()
    secrets = [server.client_secret, server.initial_refresh_token, *server.issued_tokens()]
    assert [s for s in secrets if s.encode() in blob] == [] and b"rft." not in blob and b"act." not in blob
    stored = json.loads(blob)["entries"][KEY]
    assert set(stored) == {"encrypted", "ciphertext"} and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert TokenStore(path).get(KEY).refresh_token == server.current_refresh_token()

    server.expire_access_tokens()
    tokens_before = server.request_counts()["oauth_token"]
    monkeypatch.setenv(TOKEN_STORE_KEY_ENV, Fernet.generate_key().decode())
    with pytest.raises(TokenStoreError) as info:
        make_client(server, path).user_info(["open_id"])
    assert TOKEN_STORE_KEY_ENV in str(info.value) and str(path) in str(info.value)
    assert [s for s in secrets if s in str(info.value)] == []
    assert path.read_bytes() == blob and server.request_counts()["oauth_token"] == tokens_before


def test_local_file_entries_keep_their_own_form(tmp_path):
    """Writing one entry encrypted leaves the others as they were: one in clear stays readable without a
    key, one under another key stays decryptable by its owner."""
    path = tmp_path / "t.json"
    TokenStore(path, EntryCodec(None)).put("plain", TokenEntry(refresh_token="rft.plain-entry"))
    theirs = Fernet.generate_key().decode()
    TokenStore(path, EntryCodec(theirs)).put("theirs", TokenEntry(refresh_token="rft.their-entry"))
    mine = TokenStore(path, EntryCodec(Fernet.generate_key().decode()))
    mine.put("mine", TokenEntry(refresh_token="rft.my-entry"))
    assert mine.get("mine").refresh_token == "rft.my-entry"
    assert TokenStore(path, EntryCodec(None)).get("plain").refresh_token == "rft.plain-entry"
    assert TokenStore(path, EntryCodec(theirs)).get("theirs").refresh_token == "rft.their-entry"
    with pytest.raises(TokenStoreError, match=f"'theirs'.*{TOKEN_STORE_KEY_ENV}"):
        mine.get("theirs")
    with pytest.raises(TokenStoreError, match=f"encrypted and {TOKEN_STORE_KEY_ENV} is not set"):
        TokenStore(path, EntryCodec(None)).get("mine")
    assert b"rft.my-entry" not in path.read_bytes() and b"rft.plain-entry" in path.read_bytes()


def test_invalid_key_names_the_variable_not_the_value(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_STORE_KEY_ENV, "not-a-valid-fernet-key-value")
    with pytest.raises(TokenStoreError) as info:
        open_token_store(str(tmp_path / "t.json"))
    assert TOKEN_STORE_KEY_ENV in str(info.value) and "Fernet.generate_key" in str(info.value)
    assert "not-a-valid-fernet-key-value" not in str(info.value)


def test_local_write_is_compare_and_swap(tmp_path):
    store = TokenStore(tmp_path / "t.json", EntryCodec(None))
    assert store.read(KEY).version is None
    store.write(KEY, TokenEntry(refresh_token="rft.first-entry"), expected=None)
    with pytest.raises(StoreConflict):
        store.write(KEY, TokenEntry(refresh_token="rft.second-entry"), expected=None)  # not absent any more
    seen = store.read(KEY)
    store.put(KEY, TokenEntry(refresh_token="rft.by-another-writer"))
    with pytest.raises(StoreConflict):
        store.write(KEY, TokenEntry(refresh_token="rft.stale-writer"), expected=seen.version)
    assert store.get(KEY).refresh_token == "rft.by-another-writer"
    current = store.read(KEY)
    store.write(KEY, TokenEntry(refresh_token="rft.up-to-date"), expected=current.version)
    assert store.get(KEY).refresh_token == "rft.up-to-date"


def test_location_selects_the_backend(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert isinstance(open_token_store(), TokenStore)
    assert store_location() == str(tmp_path / ".tiktok_tokens.json")  # default unchanged
    assert store_location(f"file://{tmp_path}/x.json") == str(tmp_path / "x.json")
    monkeypatch.setenv(TOKEN_STORE_ENV, "s3://bucket/some/prefix")
    assert store_location() == "s3://bucket/some/prefix/"
    assert store_location(str(tmp_path / "y.json")) == str(tmp_path / "y.json")  # explicit value wins
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    for url in ("s3://bucket/p/", "gs://bucket/p/", "az://container/p/",
                "abfss://container@acct.dfs.core.windows.net/p/"):
        store = open_token_store(url)  # constructing a client makes no request
        assert isinstance(store, ObjectTokenStore)
        assert store.describe(KEY) == f"token store entry '{KEY}' ({url}{KEY}.json)"
    with pytest.raises(TokenStoreError, match="unsupported scheme 'ftp'"):
        open_token_store("ftp://host/tokens/")
    with pytest.raises(TokenStoreError, match="not a plain name"):
        open_token_store("s3://bucket/p/").read("../escape")


def test_client_options_carry_allow_http_and_short_timeouts(monkeypatch):
    monkeypatch.delenv("AWS_ALLOW_HTTP", raising=False)
    assert client_options("s3://b/p/") == {"timeout": "30s", "connect_timeout": "5s"}
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    assert client_options("s3://b/p/")["allow_http"] is True
    assert "allow_http" not in client_options("gs://b/p/")


def test_unreachable_object_store_names_variables_never_values(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: connections are refused
    for name, value in {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLEVALUE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value-xyz",
                        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                        "AWS_ALLOW_HTTP": "true"}.items():
        monkeypatch.setenv(name, value)
    store = open_token_store("s3://bucket/tokens/")
    with pytest.raises(TokenStoreError) as info:
        store.get(KEY)
    text = str(info.value)
    assert "cannot read token store entry 'tiktok_organic' (s3://bucket/tokens/tiktok_organic.json)" in text
    assert "AWS_SECRET_ACCESS_KEY" in text and "s3cr3t-value-xyz" not in text and "AKIDEXAMPLEVALUE" not in text
