"""The consent stub of ``www.tiktok.com/v2/auth/authorize/``, served by the sandbox under the same path.

``GET /v2/auth/authorize/?client_key&scope&response_type=code&redirect_uri&state`` answers an HTML page
listing the sandbox's accounts, each with an "Approve as <account>" link, plus a "Deny" link. The links
carry the original parameters:

* ``/v2/auth/authorize/approve?account=<name>&...`` issues a single-use code for that account with the
  requested scopes, bound to ``redirect_uri`` (and to ``code_challenge`` if given), and answers
  ``302 redirect_uri?code=...&scopes=...&state=...``;
* ``/v2/auth/authorize/deny?...`` answers ``302 redirect_uri?error=access_denied&error_description=...``.

GET and POST (form) both work for approve/deny. Bad or missing parameters answer a 400 page naming the
parameter; a scope the app may not request redirects with ``error=invalid_scope`` (TikTok rejects the whole
authorization rather than dropping the scope). None of this is counted as API traffic: it is TikTok's web
host, not the API host.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .config import USER_FIELD_SCOPES

AUTHORIZE_PATH = "/v2/auth/authorize/"
APPROVE_PATH = AUTHORIZE_PATH + "approve/"
DENY_PATH = AUTHORIZE_PATH + "deny/"
KNOWN_SCOPES = frozenset({*USER_FIELD_SCOPES.values(), "video.list"})
_PASSED_ON = ("client_key", "scope", "response_type", "redirect_uri", "state", "code_challenge",
              "code_challenge_method")


@dataclass
class Page:
    """What the consent stub answers: an HTML page, or a redirect when ``location`` is set."""

    status: int
    html: str = ""
    location: str | None = None


@dataclass
class ConsentAccount:
    name: str
    display_name: str
    username: str


class _BadParam(Exception):
    def __init__(self, param: str, problem: str) -> None:
        super().__init__(param)
        self.param, self.problem = param, problem


IssueCode = Callable[[str, str, str | None, tuple[str, ...]], str]  # (account, redirect_uri, challenge, scopes)


def handle(
    path: str, params: Mapping[str, str], client_key: str, approvable_scopes: Sequence[str],
    accounts: Sequence[ConsentAccount], issue_code: IssueCode,
) -> Page:
    """Answer one consent-stub request; ``path`` is normalised to end with '/'."""
    if path not in (AUTHORIZE_PATH, APPROVE_PATH, DENY_PATH):
        return _error_page(404, "path", f"unknown page {path}")
    try:
        redirect_uri, scopes = _validate(params, client_key)
        if path == AUTHORIZE_PATH:
            bad = [s for s in scopes if s not in KNOWN_SCOPES or s not in approvable_scopes]
            if bad:  # the whole authorization fails, as on TikTok
                return _redirect(redirect_uri, {"error": "invalid_scope", "error_description":
                                                f"The app is not approved for: {','.join(bad)}",
                                                "state": params["state"]})
            return Page(200, _consent_page(params, scopes, accounts))
        if path == DENY_PATH:
            return _redirect(redirect_uri, {"error": "access_denied", "error_description":
                                            "The user denied the authorization.", "state": params["state"]})
        names = [a.name for a in accounts]
        account = params.get("account", "")
        if account not in names:
            raise _BadParam("account", f"must be one of {', '.join(names)}" if account else "is required")
        code = issue_code(account, redirect_uri, params.get("code_challenge") or None, scopes)
        return _redirect(redirect_uri, {"code": code, "scopes": ",".join(scopes), "state": params["state"]})
    except _BadParam as exc:
        return _error_page(400, exc.param, exc.problem)


def parse_params(query: str, body: bytes, content_type: str) -> dict[str, str]:
    """Query parameters, overlaid by a form body (POST approve/deny); first value of each wins."""
    pairs = parse_qsl(query, keep_blank_values=True)
    if body and content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    out: dict[str, str] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def _validate(params: Mapping[str, str], client_key: str) -> tuple[str, tuple[str, ...]]:
    if not params.get("client_key"):
        raise _BadParam("client_key", "is required")
    if params["client_key"] != client_key:
        raise _BadParam("client_key", "is not the key of this app")
    if params.get("response_type") != "code":
        raise _BadParam("response_type", "must be 'code'")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri:
        raise _BadParam("redirect_uri", "is required")
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise _BadParam("redirect_uri", "must be an absolute http(s) URL without a fragment")
    if not params.get("state"):
        raise _BadParam("state", "is required")
    scopes = tuple(dict.fromkeys(s.strip() for s in params.get("scope", "").split(",") if s.strip()))
    if not scopes:
        raise _BadParam("scope", "is required (comma-separated)")
    method = params.get("code_challenge_method")
    if params.get("code_challenge") and method not in (None, "", "S256"):
        raise _BadParam("code_challenge_method", "must be S256")
    return redirect_uri, scopes


def _redirect(redirect_uri: str, extra: Mapping[str, str]) -> Page:
    parts = urlsplit(redirect_uri)
    query = "&".join(q for q in (parts.query, urlencode(extra, safe=",")) if q)
    return Page(302, location=urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")))


def _link(path: str, params: Mapping[str, str], **extra: str) -> str:
    passed = {k: params[k] for k in _PASSED_ON if params.get(k)}
    return html.escape(f"{path}?{urlencode({**extra, **passed}, safe=',')}")


def _consent_page(params: Mapping[str, str], scopes: Sequence[str], accounts: Sequence[ConsentAccount]) -> str:
    esc = html.escape
    items = "".join(
        f'<li><strong>{esc(a.display_name)}</strong> (@{esc(a.username)}) '
        f'<a class="approve" data-account="{esc(a.name)}" href="{_link(APPROVE_PATH, params, account=a.name)}">'
        f"Approve as {esc(a.name)}</a></li>"
        for a in accounts
    )
    scope_items = "".join(f"<li>{esc(s)}</li>" for s in scopes)
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorize - TikTok sandbox</title></head>"
        f"<body><h1>{esc(params['client_key'])} wants to access your TikTok account</h1>"
        f"<p>Requested scopes:</p><ul class=\"scopes\">{scope_items}</ul>"
        f"<p>Continue as:</p><ul class=\"accounts\">{items}</ul>"
        f'<p><a class="deny" href="{_link(DENY_PATH, params)}">Deny</a></p></body></html>'
    )


def _error_page(status: int, param: str, problem: str) -> Page:
    esc = html.escape
    return Page(status, "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorization error</title>"
                        f"</head><body><h1>Invalid request</h1><p class=\"error\" data-param=\"{esc(param)}\">"
                        f"Parameter <code>{esc(param)}</code> {esc(problem)}.</p></body></html>")
