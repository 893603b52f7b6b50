"""What one HTTP response means for the retry loop: data, a fatal error, a refresh, or a retry.

Classification is pure (no I/O, no sleeping), so each rule is tested on a canned response.
"""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tiktok_organic_dagster.tiktok.errors import (
    RateLimitedError,
    ReauthorizationRequired,
    TikTokApiError,
    TikTokError,
    TikTokTransportError,
)

if TYPE_CHECKING:
    import requests

SCOPE_CODES = ("scope_not_authorized", "scope_permission_missed")


@dataclass(frozen=True)
class Data:
    """A successful answer: the ``data`` object (data endpoints) or the token body (OAuth)."""

    body: dict[str, Any]


@dataclass(frozen=True)
class AuthInvalid:
    """access_token_invalid: refresh the access token and repeat the request."""

    status: int | None


@dataclass(frozen=True)
class ScopeMissing:
    """The token lacks a scope; the client turns this into a MissingScopeError naming the fields."""

    error: TikTokApiError


@dataclass(frozen=True)
class Fatal:
    """An error that retrying cannot fix."""

    error: TikTokError


@dataclass(frozen=True)
class Retry:
    """A failed attempt worth retrying; turned into a typed error if retries run out."""

    kind: Literal["rate", "server", "transport"]
    message: str
    status: int | None = None
    code: str | None = None
    log_id: str | None = None
    retry_after: float | None = None


DataOutcome = Data | AuthInvalid | ScopeMissing | Fatal | Retry
TokenOutcome = Data | Fatal | Retry


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


def classify_data_response(resp: requests.Response) -> DataOutcome:
    """What a Display API response means (see the outcome classes above)."""
    status = resp.status_code
    doc = _json_body(resp)
    if not isinstance(doc, dict):
        if status == 429:
            return Retry("rate", "HTTP 429", status, retry_after=retry_after_seconds(resp))
        if status == 401:
            return AuthInvalid(status)
        if status < 300 or status >= 500:
            return Retry("transport" if status < 300 else "server", "undecodable response body", status,
                          retry_after=retry_after_seconds(resp) if status >= 500 else None)
        return Fatal(TikTokApiError(f"http_{status}", "non-JSON error response", None, status))
    err = doc.get("error")
    if isinstance(err, dict):
        code, message, log_id = err.get("code"), str(err.get("message") or ""), err.get("log_id")
    else:
        code, message, log_id = None, "", None
    if status < 300 and code in ("ok", None):
        data = doc.get("data")
        if isinstance(data, dict):
            return Data(data)
        return Retry("transport", "response without a data object", status, code, log_id)
    if code == "access_token_invalid" or (status == 401 and code is None):
        return AuthInvalid(status)
    if status == 429 or code == "rate_limit_exceeded":
        return Retry("rate", message or "rate_limit_exceeded", status, code, log_id,
                     retry_after_seconds(resp))
    if status >= 500 or code == "internal_error":
        return Retry("server", message or str(code or "server error"), status, code, log_id,
                     retry_after_seconds(resp))
    api_error = TikTokApiError(str(code or f"http_{status}"), message, log_id, status)
    if code in SCOPE_CODES:
        return ScopeMissing(api_error)
    return Fatal(api_error)


def classify_token_response(resp: requests.Response, env_var: str) -> TokenOutcome:
    """What an OAuth token response means, for both grant types."""
    status = resp.status_code
    doc = _json_body(resp)
    if not isinstance(doc, dict):
        if status == 429:
            return Retry("rate", "HTTP 429", status, retry_after=retry_after_seconds(resp))
        if status < 300 or status >= 500:
            return Retry("transport" if status < 300 else "server", "undecodable token response", status)
        return Fatal(TikTokApiError(f"http_{status}", "non-JSON token error response", None, status))
    if status < 300 and isinstance(doc.get("access_token"), str):
        return Data(doc)
    data = doc.get("data")
    if status < 300 and isinstance(data, dict) and isinstance(data.get("access_token"), str):
        return Data(data)  # legacy wrapper shape
    err = doc.get("error")
    if isinstance(err, dict):
        code, desc, log_id = err.get("code"), str(err.get("message") or ""), err.get("log_id")
    else:
        code, desc, log_id = err, str(doc.get("error_description") or ""), doc.get("log_id")
    code = str(code) if code else None
    if code == "invalid_grant":
        return Fatal(ReauthorizationRequired(f"invalid_grant: {desc or 'token invalid, expired or revoked'}"
                                             + (f" [log_id {log_id}]" if log_id else ""), env_var=env_var))
    if status == 429 or code == "rate_limit_exceeded":
        return Retry("rate", desc or "rate_limit_exceeded", status, code, log_id, retry_after_seconds(resp))
    if status >= 500 or code in ("server_error", "temporarily_unavailable", "internal_error"):
        return Retry("server", desc or str(code), status, code, log_id, retry_after_seconds(resp))
    if code in ("invalid_client", "unauthorized_client"):
        desc = f"{desc} (check the client key/secret, e.g. TIKTOK_CLIENT_ID / TIKTOK_CLIENT_SECRET)".strip()
    if code is None and status < 300:
        return Fatal(TikTokApiError("invalid_token_response", "token response without access_token", log_id,
                                    status))
    return Fatal(TikTokApiError(code or f"http_{status}", desc, log_id, status))


def give_up(endpoint: str, retry: Retry, attempts: int) -> TikTokError:
    if retry.kind == "rate":
        return RateLimitedError(f"{endpoint}: still rate limited after {attempts} attempts",
                                retry_after=retry.retry_after, log_id=retry.log_id, status=retry.status)
    if retry.kind == "server":
        return TikTokApiError(retry.code or f"http_{retry.status}",
                              f"{endpoint}: {retry.message} (gave up after {attempts} attempts)",
                              retry.log_id, retry.status)
    return TikTokTransportError(f"{endpoint}: {retry.message} (gave up after {attempts} attempts)")

