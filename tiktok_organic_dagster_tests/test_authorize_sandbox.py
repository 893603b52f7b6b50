"""The OAuth web flow end to end against the sandbox: consent page -> approve/deny -> redirect with code and
state -> `tiktok-organic-authorize` exchanges the code and writes the account's token store entry."""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests

from tiktok_organic_dagster import names
from tiktok_organic_dagster.cli import authorize
from tiktok_organic_dagster.sandbox import SandboxServer
from tiktok_organic_dagster.tiktok.client import TikTokClient

TIMEOUT = 5
REDIRECT = "https://example.com/tiktok/callback"
SCOPES = "user.info.basic,user.info.profile,user.info.stats,video.list"
APPROVE = re.compile(r'<a class="approve" data-account="([^"]+)" href="([^"]+)"')
DENY = re.compile(r'<a class="deny" href="([^"]+)"')


def authorize_params(server: SandboxServer, **overrides: str | None) -> dict[str, str]:
    params = {"client_key": server.client_id, "scope": SCOPES, "response_type": "code", "redirect_uri": REDIRECT,
              "state": "st-123", **overrides}
    return {k: v for k, v in params.items() if v is not None}


def consent_page(server: SandboxServer, **overrides: str | None) -> requests.Response:
    return requests.get(f"{server.base_url}/v2/auth/authorize/", params=authorize_params(server, **overrides),
                        timeout=TIMEOUT)


def links(page_html: str, base_url: str) -> tuple[dict[str, str], str]:
    """(account -> absolute approve URL, deny URL) from the consent page."""
    approve = {acct: urljoin(base_url, html.unescape(href)) for acct, href in APPROVE.findall(page_html)}
    deny = DENY.findall(page_html)
    assert len(deny) == 1
    return approve, urljoin(base_url, html.unescape(deny[0]))


def follow(url: str) -> requests.Response:
    resp = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert resp.status_code == 302, resp.text
    return resp


def callback(location: str) -> dict[str, str]:
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(server: SandboxServer, code: str, redirect_uri: str = REDIRECT, **extra: str) -> requests.Response:
    return requests.post(f"{server.base_url}/v2/oauth/token/", timeout=TIMEOUT, data={
        "client_key": server.client_id, "client_secret": server.client_secret, "grant_type": "authorization_code",
        "code": code, "redirect_uri": redirect_uri, **extra})


# ---- the consent stub ----------------------------------------------------------------------------------
def test_consent_page_lists_every_account_and_approve_redirects_with_code(sandbox_factory) -> None:
    server = sandbox_factory(accounts=3, video_count=5)
    page = consent_page(server)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    approve, _ = links(page.text, server.base_url)
    assert list(approve) == ["account_1", "account_2", "account_3"]
    for name in approve:
        assert f"Approve as {name}" in page.text
        assert html.escape(server.user(name)["display_name"]) in page.text
    assert ">Deny</a>" in page.text and "video.list" in page.text

    redirect = follow(approve["account_2"])
    got = callback(redirect.headers["Location"])
    assert got["state"] == "st-123" and got["scopes"] == SCOPES and got["code"]
    grant = exchange(server, got["code"])
    assert grant.status_code == 200, grant.text
    body = grant.json()
    assert body["open_id"] == server.user("account_2")["open_id"] and body["scope"] == SCOPES
    assert server.current_refresh_token("account_2") == body["refresh_token"]
    assert server.current_refresh_token("account_1") == server.initial_refresh_tokens["account_1"]
    me = requests.get(f"{server.base_url}/v2/user/info/?fields=open_id", timeout=TIMEOUT,
                      headers={"Authorization": f"Bearer {body['access_token']}"}).json()["data"]["user"]
    assert me == {"open_id": server.user("account_2")["open_id"]}
    assert exchange(server, got["code"]).json()["error"] == "invalid_grant"  # single use
    assert sum(server.request_counts().values()) == 3  # the consent pages are not API traffic


def test_code_is_bound_to_redirect_uri_scopes_and_pkce(sandbox_factory) -> None:
    server = sandbox_factory(accounts=2, video_count=5)
    approve, _ = links(consent_page(server).text, server.base_url)
    code = callback(follow(approve["account_1"]).headers["Location"])["code"]
    mismatch = exchange(server, code, redirect_uri="https://example.com/other")
    assert mismatch.status_code == 400 and mismatch.json()["error"] == "invalid_grant"

    narrow, _ = links(consent_page(server, scope="user.info.basic").text, server.base_url)
    got = callback(follow(narrow["account_2"]).headers["Location"])
    assert got["scopes"] == "user.info.basic"
    grant = exchange(server, got["code"]).json()
    assert grant["scope"] == "user.info.basic"
    denied = requests.post(f"{server.base_url}/v2/video/list/?fields=id", json={}, timeout=TIMEOUT,
                           headers={"Authorization": f"Bearer {grant['access_token']}"})
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "scope_not_authorized"

    verifier = "v" * 50
    challenge = hashlib.sha256(verifier.encode()).hexdigest()
    pkce, _ = links(consent_page(server, code_challenge=challenge, code_challenge_method="S256").text,
                    server.base_url)
    pkce_code = callback(follow(pkce["account_2"]).headers["Location"])["code"]
    assert exchange(server, pkce_code, code_verifier="w" * 50).json()["error"] == "invalid_grant"
    pkce_code = callback(follow(pkce["account_2"]).headers["Location"])["code"]
    assert exchange(server, pkce_code, code_verifier=verifier).status_code == 200


def test_approve_also_works_as_a_form_post(sandbox_factory) -> None:
    server = sandbox_factory(accounts=2, video_count=5)
    resp = requests.post(f"{server.base_url}/v2/auth/authorize/approve",
                         data={**authorize_params(server), "account": "account_2"}, allow_redirects=False,
                         timeout=TIMEOUT)
    assert resp.status_code == 302
    code = callback(resp.headers["Location"])["code"]
    assert exchange(server, code).json()["open_id"] == server.user("account_2")["open_id"]


def test_deny_and_invalid_scope_redirect_with_an_error(sandbox_factory) -> None:
    server = sandbox_factory(accounts=2, video_count=5)
    _, deny = links(consent_page(server).text, server.base_url)
    got = callback(follow(deny).headers["Location"])
    assert got["error"] == "access_denied" and got["error_description"] and got["state"] == "st-123"
    assert "code" not in got

    bad_scope = requests.get(f"{server.base_url}/v2/auth/authorize/", allow_redirects=False, timeout=TIMEOUT,
                             params=authorize_params(server, scope="user.info.basic,video.publish"))
    assert bad_scope.status_code == 302
    got = callback(bad_scope.headers["Location"])
    assert got["error"] == "invalid_scope" and "video.publish" in got["error_description"]

    limited = sandbox_factory(granted_scopes=("user.info.basic",), video_count=1)
    not_approved = requests.get(f"{limited.base_url}/v2/auth/authorize/", allow_redirects=False, timeout=TIMEOUT,
                                params=authorize_params(limited))
    assert callback(not_approved.headers["Location"])["error"] == "invalid_scope"


@pytest.mark.parametrize(("overrides", "param"), [
    ({"client_key": None}, "client_key"),
    ({"client_key": "someone-else"}, "client_key"),
    ({"redirect_uri": None}, "redirect_uri"),
    ({"redirect_uri": "/relative/cb"}, "redirect_uri"),
    ({"redirect_uri": "https://example.com/cb#frag"}, "redirect_uri"),
    ({"state": None}, "state"),
    ({"response_type": None}, "response_type"),
    ({"response_type": "token"}, "response_type"),
    ({"scope": None}, "scope"),
])
def test_bad_authorize_parameters_answer_400_naming_them(sandbox: SandboxServer, overrides: dict[str, Any],
                                                         param: str) -> None:
    for path in ("", "approve", "deny"):
        query = urlencode({**authorize_params(sandbox, **overrides), "account": "account_1"})
        resp = requests.get(f"{sandbox.base_url}/v2/auth/authorize/{path}?{query}", allow_redirects=False,
                            timeout=TIMEOUT)
        assert resp.status_code == 400, (path, resp.status_code)
        assert f'data-param="{param}"' in resp.text and f"<code>{param}</code>" in resp.text
        assert "Location" not in resp.headers


def test_approve_needs_a_known_account(sandbox_factory) -> None:
    server = sandbox_factory(accounts=2, video_count=1)
    for account in ("", "account_7"):
        resp = requests.get(f"{server.base_url}/v2/auth/authorize/approve", allow_redirects=False, timeout=TIMEOUT,
                            params={**authorize_params(server), "account": account})
        assert resp.status_code == 400 and 'data-param="account"' in resp.text


# ---- tiktok-organic-authorize against the sandbox ------------------------------------------------------
class Browser(io.StringIO):
    """stdin stand-in: opens the printed authorize URL, clicks approve (or deny) and pastes the redirect."""

    def __init__(self, out: io.StringIO, account: str | None) -> None:
        super().__init__()
        self.out, self.account = out, account
        self.printed_url = ""

    def readline(self, *args: Any) -> str:
        self.printed_url = next(x.strip() for x in self.out.getvalue().splitlines() if "/v2/auth/authorize/" in x)
        page = requests.get(self.printed_url, timeout=TIMEOUT)
        assert page.status_code == 200, page.text
        approve, deny = links(page.text, self.printed_url)
        return follow(approve[self.account] if self.account else deny).headers["Location"] + "\n"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("TIKTOK_REFRESH_TOKEN", "TIKTOK_API_BASE_URL", "TIKTOK_TOKEN_STORE", "TIKTOK_TOKEN_STORE_KEY",
                "TIKTOK_CLIENT_ID"):
        monkeypatch.delenv(var, raising=False)


def run_cli(server: SandboxServer, store: Any, account: str | None, *extra: str) -> tuple[int, str, Browser]:
    out = io.StringIO()
    browser = Browser(out, account)
    argv = ["--client-id", server.client_id, "--redirect-uri", REDIRECT, "--api-base-url", server.base_url,
            "--token-store", str(store), *extra]
    return authorize.main(argv, stdin=browser, stdout=out), out.getvalue(), browser


def test_authorize_tool_runs_the_web_flow_against_the_sandbox(sandbox_factory, tmp_path, monkeypatch, capsys,
                                                              cli_env) -> None:
    server = sandbox_factory(accounts=2, video_count=5)
    monkeypatch.setenv("TIKTOK_CLIENT_SECRET", server.client_secret)
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(authorize, "_after_store", lambda source, account: calls.append((source, account)))
    store = tmp_path / "tokens.json"
    rc, out, browser = run_cli(server, store, "account_2", "--account", "account_2")
    assert rc == 0, capsys.readouterr().err
    assert browser.printed_url.startswith(f"{server.base_url}/v2/auth/authorize/?")
    query = parse_qs(urlsplit(browser.printed_url).query)
    assert query["client_key"] == [server.client_id] and query["redirect_uri"] == [REDIRECT]
    key = names.account_token_key(names.DEFAULT_SOURCE_NAME, "account_2")
    assert key == "tiktok_organic.account_2"
    entries = json.loads(store.read_text())["entries"]
    assert set(entries) == {key}
    assert entries[key]["open_id"] == server.user("account_2")["open_id"]
    assert entries[key]["refresh_token"] == server.current_refresh_token("account_2")
    assert server.current_refresh_token("account_1") == server.initial_refresh_tokens["account_1"]
    assert calls == [("tiktok_organic", "account_2")]
    printed = out + capsys.readouterr().err
    for secret in (server.client_secret, *server.issued_tokens()):
        assert secret not in printed

    # The runtime client reads that entry and is answered as account_2.
    client = TikTokClient(client_id=server.client_id, client_secret=server.client_secret, refresh_token="",
                          api_base_url=server.base_url, token_store_path=str(store), token_store_key=key)
    try:
        assert client.user_info(["open_id"])["open_id"] == server.user("account_2")["open_id"]
    finally:
        client.close()

    # A second account of another source lands beside it; without --account no hook runs.
    rc, _, _ = run_cli(server, store, "account_1", "--source", "brand_x", "--account", "account_1")
    assert rc == 0 and calls[-1] == ("brand_x", "account_1")
    rc, _, _ = run_cli(server, store, "account_1", "--key", "plain")
    assert rc == 0 and len(calls) == 2
    assert set(json.loads(store.read_text())["entries"]) == {key, "brand_x.account_1", "plain"}


def test_authorize_tool_reports_a_denial_and_stores_nothing(sandbox_factory, tmp_path, monkeypatch, capsys,
                                                            cli_env) -> None:
    server = sandbox_factory(accounts=2, video_count=1)
    monkeypatch.setenv("TIKTOK_CLIENT_SECRET", server.client_secret)
    store = tmp_path / "tokens.json"
    rc, _, _ = run_cli(server, store, None, "--account", "account_1")
    assert rc == 1 and "access_denied" in capsys.readouterr().err
    assert not store.exists() or "tiktok_organic.account_1" not in store.read_text()
    assert server.request_counts()["oauth_token"] == 0


@pytest.mark.parametrize(("extra", "message"), [
    (["--account", "Account2"], "--account 'Account2' is not a valid name"),
    (["--account", "2nd"], "--account '2nd' is not a valid name"),
    (["--source", "my-source", "--account", "a"], "--source 'my-source' is not a valid name"),
    (["--key", "k", "--account", "a"], "--key and --account exclude each other"),
])
def test_authorize_tool_validates_source_and_account(sandbox: SandboxServer, tmp_path, monkeypatch, capsys,
                                                     cli_env, extra: list[str], message: str) -> None:
    monkeypatch.setenv("TIKTOK_CLIENT_SECRET", sandbox.client_secret)
    rc, out, _ = run_cli(sandbox, tmp_path / "t.json", "account_1", *extra)
    assert rc == 2 and message in capsys.readouterr().err
    assert "/v2/auth/authorize/" not in out  # rejected before any URL (or code) is handed out


def test_sandbox_probe(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert authorize.sandbox_authorize_url(sandbox.base_url) == f"{sandbox.base_url}/v2/auth/authorize/"
    assert authorize.sandbox_authorize_url(sandbox.base_url + "/") == f"{sandbox.base_url}/v2/auth/authorize/"
    assert authorize.sandbox_authorize_url(f"{sandbox.base_url}/v2") is None  # answers, but not as the sandbox
    port = sandbox.port
    sandbox.stop()
    assert authorize.sandbox_authorize_url(f"http://127.0.0.1:{port}", timeout=0.5) is None

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("TikTok's own API host must not be probed")

    monkeypatch.setattr(authorize.requests, "get", no_network)
    assert authorize.sandbox_authorize_url(names.DEFAULT_API_BASE_URL) is None
