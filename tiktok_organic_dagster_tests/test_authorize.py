"""`tiktok-organic-authorize`: URL, state check, code exchange, store entry, nothing secret printed."""

from __future__ import annotations

import io
import json
import os
import stat
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from tiktok_organic_dagster.cli.authorize import main, parse_pasted
from tiktok_organic_dagster.tiktok.client import TikTokClient

TOKEN_URL = "https://open.tiktokapis.com/v2/oauth/token/"
REDIRECT = "https://example.com/tiktok/callback"
TOKENS = {"access_token": "act.authorized-access-1", "refresh_token": "rft.authorized-refresh-1",
          "expires_in": 86400, "refresh_expires_in": 31536000, "open_id": "open-xyz",
          "scope": "user.info.basic,user.info.profile,user.info.stats,video.list", "token_type": "Bearer"}


class RedirectPaster(io.StringIO):
    """stdin stand-in: 'pastes' the redirect URL built from the authorize URL printed to stdout."""

    def __init__(self, out: io.StringIO, state_override: str | None = None, bare: bool = False) -> None:
        super().__init__()
        self.out, self.state_override, self.bare = out, state_override, bare
        self.printed_url = ""

    def readline(self, *args) -> str:
        lines = self.out.getvalue().splitlines()
        self.printed_url = next(x.strip() for x in lines if "/v2/auth/authorize/" in x)
        state = parse_qs(urlsplit(self.printed_url).query)["state"][0]
        if self.bare:
            return "the-auth-code\n"
        return f"{REDIRECT}?code=the-auth-code&scopes=user.info.basic&state={self.state_override or state}\n"


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOK_CLIENT_ID", "ck-auth")
    monkeypatch.setenv("TIKTOK_CLIENT_SECRET", "cs-auth-secret-value")
    monkeypatch.delenv("TIKTOK_REFRESH_TOKEN", raising=False)
    monkeypatch.delenv("TIKTOK_API_BASE_URL", raising=False)
    monkeypatch.setenv("TIKTOK_TOKEN_STORE", str(tmp_path / "store.json"))
    return tmp_path / "store.json"


def run(argv, paster_kw=None):
    out = io.StringIO()
    stdin = RedirectPaster(out, **(paster_kw or {}))
    code = main(argv, stdin=stdin, stdout=out)
    return code, out.getvalue(), stdin


@responses.activate
def test_authorize_full_flow_writes_store_and_client_uses_it(env, capsys):
    responses.post(TOKEN_URL, json=TOKENS)
    code, out, stdin = run(["--redirect-uri", REDIRECT])
    assert code == 0
    query = parse_qs(urlsplit(stdin.printed_url).query)
    assert stdin.printed_url.startswith("https://www.tiktok.com/v2/auth/authorize/?")
    assert query["client_key"] == ["ck-auth"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == [REDIRECT]
    assert "scope=user.info.basic,user.info.profile,user.info.stats,video.list" in stdin.printed_url
    assert len(query["state"][0]) >= 16
    form = parse_qs(responses.calls[0].request.body)
    assert form["grant_type"] == ["authorization_code"] and form["code"] == ["the-auth-code"]
    assert form["redirect_uri"] == [REDIRECT] and form["client_key"] == ["ck-auth"]
    entry = json.loads(env.read_text())["entries"]["tiktok_organic"]
    assert entry["refresh_token"] == "rft.authorized-refresh-1" and entry["open_id"] == "open-xyz"
    assert stat.S_IMODE(os.stat(env).st_mode) == 0o600
    printed = out + capsys.readouterr().err
    for secret in ("act.authorized-access-1", "rft.authorized-refresh-1", "cs-auth-secret-value"):
        assert secret not in printed
    assert "TIKTOK_REFRESH_TOKEN" in out and "unset" in out

    # The client with an empty env token uses the store entry (access token still valid: no refresh).
    responses.get("https://open.tiktokapis.com/v2/user/info/",
                  json={"data": {"user": {"open_id": "open-xyz"}}, "error": {"code": "ok", "message": ""}})
    client = TikTokClient(client_id="ck-auth", client_secret="cs-auth-secret-value", refresh_token="")
    assert client.user_info(["open_id"]) == {"open_id": "open-xyz"}
    assert client.stats.requests["oauth_token"] == 0
    assert client.refresh_token_days_left() == pytest.approx(365, abs=0.01)


@responses.activate
def test_authorize_state_mismatch_rejected_without_exchange(env):
    responses.post(TOKEN_URL, json=TOKENS)
    code, _, _ = run(["--redirect-uri", REDIRECT], {"state_override": "forged"})
    assert code == 1 and len(responses.calls) == 0 and not env.exists()


@responses.activate
def test_authorize_bare_code_and_code_flag_and_key(env):
    responses.post(TOKEN_URL, json=TOKENS)
    assert run(["--redirect-uri", REDIRECT], {"bare": True})[0] == 0
    assert run(["--redirect-uri", REDIRECT, "--code", "flag-code", "--key", "acct2"])[0] == 0
    assert parse_qs(responses.calls[1].request.body)["code"] == ["flag-code"]
    assert set(json.loads(env.read_text())["entries"]) == {"tiktok_organic", "acct2"}


def test_authorize_secret_only_from_env(env, monkeypatch, capsys):
    monkeypatch.delenv("TIKTOK_CLIENT_SECRET")
    assert run(["--redirect-uri", REDIRECT, "--code", "c"])[0] == 2
    assert "TIKTOK_CLIENT_SECRET" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--redirect-uri", REDIRECT, "--client-secret", "x"])


@responses.activate
def test_authorize_exchange_error_is_reported(env, capsys):
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "Code expired",
                                                "log_id": "L1"})
    assert run(["--redirect-uri", REDIRECT, "--code", "old-code"])[0] == 1
    err = capsys.readouterr().err
    assert "Code expired" in err and "old-code" not in err
    assert len(responses.calls) == 1


def test_authorize_parse_pasted():
    assert parse_pasted("  abc  ", "s") == "abc"
    assert parse_pasted(f"{REDIRECT}?code=x%2Ay&state=s", "s") == "x*y"
    with pytest.raises(ValueError, match="denied"):
        parse_pasted(f"{REDIRECT}?error=access_denied&error_description=no&state=s", "s")
    with pytest.raises(ValueError, match="state"):
        parse_pasted(f"{REDIRECT}?code=x", "s")


def test_authorize_against_sandbox(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOK_CLIENT_SECRET", sandbox.client_secret)
    monkeypatch.delenv("TIKTOK_REFRESH_TOKEN", raising=False)
    store = tmp_path / "sb.json"
    code = sandbox.issue_authorization_code()
    rc = main(["--client-id", sandbox.client_id, "--redirect-uri", REDIRECT,
               "--api-base-url", sandbox.base_url, "--token-store", str(store), f"--code={code}"],
              stdout=io.StringIO())
    assert rc == 0
    client = TikTokClient(client_id=sandbox.client_id, client_secret=sandbox.client_secret, refresh_token="",
                          api_base_url=sandbox.base_url, token_store_path=str(store))
    assert client.user_info(["open_id"])["open_id"] == sandbox.user()["open_id"]
    assert json.loads(store.read_text())["entries"]["tiktok_organic"]["refresh_token"] == \
        sandbox.current_refresh_token()
