"""Typed TikTok client errors plus the secret-redaction safeguard shared by the client and its logs.

Every message passes through :func:`redact` so that a token or the client secret can never reach a log,
a Dagster event or a traceback, even if a server or ``requests`` echoes one back.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import requests

REAUTHORIZE_HOWTO = (
    "You must re-authorize the app: run "
    "`tiktok-organic-authorize --redirect-uri <your registered redirect URI>` "
    "(add `--key <token_store_key>` for a non-default source); it writes a new entry to the token store, "
    "then leave {env_var} unset/empty (the store entry is used) or put the new refresh token in {env_var}."
)

# Shapes that look like TikTok tokens or secret-bearing key/value pairs; a safeguard on top of the
# exact-value registry below (which covers secrets of any shape, e.g. the client secret).
_TOKEN_PATTERNS = re.compile(
    r"\b(?P<tok>(?:act|rft|clt)\.)[A-Za-z0-9!._~+/=-]{6,}"
    r"|(?P<bearer>Bearer\s+)[A-Za-z0-9!._~+/=-]+"
    r"|(?P<kv>\b(?:client_secret|refresh_token|access_token|code)=)[^&\s\"']+"
    r"|(?P<js>\"(?:client_secret|refresh_token|access_token)\"\s*:\s*\")[^\"]+",
    re.IGNORECASE,
)
REDACTED = "***"

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_secrets_sorted: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Remember an exact secret value (client secret, tokens) so :func:`redact` removes it anywhere."""
    global _secrets_sorted
    if not value or len(value) < 4 or value in _secrets:
        return
    with _secrets_lock:
        _secrets.add(value)
        # Longest first so a secret containing another is removed whole.
        _secrets_sorted = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Return ``text`` with registered secrets, ``extra`` values and token-like strings replaced."""
    for secret in (*extra, *_secrets_sorted):
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return _TOKEN_PATTERNS.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    prefix = match.group("tok") or match.group("bearer") or match.group("kv") or match.group("js") or ""
    return prefix + REDACTED


class RedactingFilter(logging.Filter):
    """Logging filter that scrubs secrets from a record's final message (msg % args) before any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # malformed args: drop them rather than risk leaking them raw
            message = str(record.msg)
        clean = redact(message)
        record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            # Pre-render the traceback text redacted; handlers reuse exc_text instead of re-formatting.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def client_logger() -> logging.Logger:
    """The client's logger ("tiktok_organic_dagster.tiktok_client") with the redaction filter installed."""
    log = logging.getLogger("tiktok_organic_dagster.tiktok_client")
    if not any(isinstance(f, RedactingFilter) for f in log.filters):
        log.addFilter(RedactingFilter())
    return log


class TikTokError(Exception):
    """Base class of every error raised by the TikTok client; its message is always redacted."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ReauthorizationRequired(TikTokError):
    """The refresh token is missing, invalid, expired or revoked: a human must re-authorize the app."""

    def __init__(self, reason: str, *, env_var: str = "TIKTOK_REFRESH_TOKEN") -> None:
        self.reason = redact(reason)
        self.env_var = env_var
        super().__init__(f"{reason} {REAUTHORIZE_HOWTO.format(env_var=env_var)}")

    def __reduce__(self) -> tuple:
        return (_rebuild_reauth, (self.reason, self.env_var))


def _rebuild_reauth(reason: str, env_var: str) -> ReauthorizationRequired:
    return ReauthorizationRequired(reason, env_var=env_var)


class TikTokApiError(TikTokError):
    """The API answered with an error envelope (``error.code != "ok"``) or an unusable response."""

    def __init__(self, code: str, message: str, log_id: str | None = None, status: int | None = None) -> None:
        self.code = code
        self.api_message = redact(message or "")
        self.log_id = log_id
        self.status = status
        parts = [f"TikTok API error {code}"]
        if status is not None:
            parts.append(f" (HTTP {status})")
        if message:
            parts.append(f": {message}")
        if log_id:
            parts.append(f" [log_id {log_id}]")
        super().__init__("".join(parts))

    def __reduce__(self) -> tuple:
        return (type(self), (self.code, self.api_message, self.log_id, self.status))


class CursorStuckError(TikTokApiError):
    """video/list kept returning the same cursor without new videos: paging further would loop forever."""

    def __init__(self, cursor: int, repeats: int) -> None:
        self.cursor = cursor
        self.repeats = repeats
        super().__init__(
            "cursor_stuck",
            f"video/list returned cursor {cursor} {repeats} times in a row without new videos; "
            "stopping instead of looping (the listing would otherwise be silently truncated)",
        )

    def __reduce__(self) -> tuple:
        return (type(self), (self.cursor, self.repeats))


class MissingScopeError(TikTokApiError):
    """The access token lacks a scope the requested fields need (``scope_not_authorized``/``..._missed``).

    ``scope`` names the missing scope (the first, if several); ``scopes`` lists all candidates. Pass
    ``message`` to replace the generated text (e.g. to add which stream failed).
    """

    def __init__(
        self,
        scope: str,
        message: str | None = None,
        *,
        scopes: tuple[str, ...] = (),
        fields: tuple[str, ...] = (),
        code: str = "scope_not_authorized",
        api_message: str = "",
        log_id: str | None = None,
        status: int | None = None,
    ) -> None:
        self.scope = scope
        self.scopes = tuple(scopes) or (scope,)
        self.fields = tuple(fields)
        self.code = code
        self.api_message = redact(api_message or "")
        self.log_id = log_id
        self.status = status
        if message is None:
            message = f"missing TikTok scope {', '.join(self.scopes)}"
            if fields:
                message += f" (needed for fields {', '.join(fields)})"
            message += (
                f"; TikTok said {code}" + (f": {api_message}" if api_message else "")
                + (f" [log_id {log_id}]" if log_id else "")
                + ". Approve the scope for the app, then re-authorize with `tiktok-organic-authorize` "
                "(it asks for user.info.basic,user.info.profile,user.info.stats,video.list)."
            )
        TikTokError.__init__(self, message)

    def __reduce__(self) -> tuple:
        kwargs = {"scopes": self.scopes, "fields": self.fields, "code": self.code,
                  "api_message": self.api_message, "log_id": self.log_id, "status": self.status}
        return (_rebuild_missing_scope, (self.scope, self.message, kwargs))


def _rebuild_missing_scope(scope: str, message: str, kwargs: dict) -> MissingScopeError:
    return MissingScopeError(scope, message, **kwargs)


class RateLimitedError(TikTokApiError):
    """Still rate limited after all retries, or the server asked to wait longer than we are willing to."""

    def __init__(self, message: str, *, retry_after: float | None = None, log_id: str | None = None,
                 status: int | None = 429) -> None:
        self.retry_after = retry_after
        super().__init__("rate_limit_exceeded", message, log_id, status)

    def __reduce__(self) -> tuple:
        return (_rebuild_rate_limited, (self.api_message, self.retry_after, self.log_id, self.status))


def _rebuild_rate_limited(message: str, retry_after: float | None, log_id: str | None,
                          status: int | None) -> RateLimitedError:
    return RateLimitedError(message, retry_after=retry_after, log_id=log_id, status=status)


class TikTokTransportError(TikTokError):
    """Network failure, timeout or undecodable body that persisted through all retries."""


class TokenStoreError(TikTokError):
    """The token store file is unreadable or corrupt (its content is never included in the message)."""

# ------------------------------------------------------------------ mapping responses to errors
# Shared by the client's retry loop: each attempt is classified as data, a fatal typed error, an
# access_token_invalid signal, or a Retry that becomes a typed error once retries run out.
SCOPE_CODES = ("scope_not_authorized", "scope_permission_missed")


class Retry(NamedTuple):
    """A failed attempt worth retrying; turned into a typed error if retries run out."""

    kind: str  # "rate" | "server" | "transport"
    message: str
    status: int | None = None
    code: str | None = None
    log_id: str | None = None
    retry_after: float | None = None


AUTH_INVALID = object()  # sentinel: access_token_invalid -> refresh once and repeat


def _json_body(resp: requests.Response) -> Any:
    try:
        return json.loads(resp.content)
    except ValueError:
        return None


def retry_after_seconds(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def classify_data_response(resp: requests.Response) -> Any:
    """dict (data) | AUTH_INVALID | ("scope", err) | TikTokError (fatal) | Retry."""
    status = resp.status_code
    doc = _json_body(resp)
    if not isinstance(doc, dict):
        if status == 429:
            return Retry("rate", "HTTP 429", status, retry_after=retry_after_seconds(resp))
        if status == 401:
            return AUTH_INVALID
        if status < 300 or status >= 500:
            return Retry("transport" if status < 300 else "server", "undecodable response body", status,
                          retry_after=retry_after_seconds(resp) if status >= 500 else None)
        return TikTokApiError(f"http_{status}", "non-JSON error response", None, status)
    err = doc.get("error")
    if isinstance(err, dict):
        code, message, log_id = err.get("code"), str(err.get("message") or ""), err.get("log_id")
    else:
        code, message, log_id = None, "", None
    if status < 300 and code in ("ok", None):
        data = doc.get("data")
        if isinstance(data, dict):
            return data
        return Retry("transport", "response without a data object", status, code, log_id)
    if code == "access_token_invalid" or (status == 401 and code is None):
        return AUTH_INVALID
    if status == 429 or code == "rate_limit_exceeded":
        return Retry("rate", message or "rate_limit_exceeded", status, code, log_id,
                     retry_after_seconds(resp))
    if status >= 500 or code == "internal_error":
        return Retry("server", message or str(code or "server error"), status, code, log_id,
                     retry_after_seconds(resp))
    api_error = TikTokApiError(str(code or f"http_{status}"), message, log_id, status)
    if code in SCOPE_CODES:
        return ("scope", api_error)
    return api_error


def classify_token_response(resp: requests.Response, env_var: str) -> Any:
    """dict (token body) | TikTokError (fatal) | Retry, for both OAuth grant types."""
    status = resp.status_code
    doc = _json_body(resp)
    if not isinstance(doc, dict):
        if status == 429:
            return Retry("rate", "HTTP 429", status, retry_after=retry_after_seconds(resp))
        if status < 300 or status >= 500:
            return Retry("transport" if status < 300 else "server", "undecodable token response", status)
        return TikTokApiError(f"http_{status}", "non-JSON token error response", None, status)
    if status < 300 and isinstance(doc.get("access_token"), str):
        return doc
    data = doc.get("data")
    if status < 300 and isinstance(data, dict) and isinstance(data.get("access_token"), str):
        return data  # legacy wrapper shape
    err = doc.get("error")
    if isinstance(err, dict):
        code, desc, log_id = err.get("code"), str(err.get("message") or ""), err.get("log_id")
    else:
        code, desc, log_id = err, str(doc.get("error_description") or ""), doc.get("log_id")
    code = str(code) if code else None
    if code == "invalid_grant":
        return ReauthorizationRequired(f"invalid_grant: {desc or 'token invalid, expired or revoked'}"
                                       + (f" [log_id {log_id}]" if log_id else ""), env_var=env_var)
    if status == 429 or code == "rate_limit_exceeded":
        return Retry("rate", desc or "rate_limit_exceeded", status, code, log_id, retry_after_seconds(resp))
    if status >= 500 or code in ("server_error", "temporarily_unavailable", "internal_error"):
        return Retry("server", desc or str(code), status, code, log_id, retry_after_seconds(resp))
    if code in ("invalid_client", "unauthorized_client"):
        desc = f"{desc} (check the client key/secret, e.g. TIKTOK_CLIENT_ID / TIKTOK_CLIENT_SECRET)".strip()
    if code is None and status < 300:
        return TikTokApiError("invalid_token_response", "token response without access_token", log_id, status)
    return TikTokApiError(code or f"http_{status}", desc, log_id, status)


def give_up(endpoint: str, retry: Retry, attempts: int) -> TikTokError:
    if retry.kind == "rate":
        return RateLimitedError(f"{endpoint}: still rate limited after {attempts} attempts",
                                retry_after=retry.retry_after, log_id=retry.log_id, status=retry.status)
    if retry.kind == "server":
        return TikTokApiError(retry.code or f"http_{retry.status}",
                              f"{endpoint}: {retry.message} (gave up after {attempts} attempts)",
                              retry.log_id, retry.status)
    return TikTokTransportError(f"{endpoint}: {retry.message} (gave up after {attempts} attempts)")
