"""Request handling for the sandbox, independent of sockets: (method, path, headers, body) -> Response.

Order per counted request: count it -> latency sleep -> injected faults -> auth -> rate limit ->
validation -> answer. All state is guarded by one lock; sleeps happen outside it.

The app may have several accounts (users): a request is answered from the account its credential belongs
to, and counted for it too (``request_counts_by_account``) once that credential is recognised. The consent
stub (``/v2/auth/authorize/``, see ``consent``) is TikTok's web host, so it is neither counted nor faulted.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from . import consent
from .accounts import build_accounts
from .auth import OAuthError, TokenRegistry
from .config import USER_FIELD_SCOPES, VIDEO_FIELDS, SandboxConfig
from .data import Account

SCOPE_VIDEO = "video.list"
ROUTES = {
    "/v2/oauth/token/": "oauth_token",
    "/v2/oauth/revoke/": "oauth_revoke",
    "/v2/user/info/": "user_info",
    "/v2/video/list/": "video_list",
    "/v2/video/query/": "video_query",
}
_METHODS = {
    "oauth_token": "POST",
    "oauth_revoke": "POST",
    "user_info": "GET",
    "video_list": "POST",
    "video_query": "POST",
}
_MESSAGES = {
    "access_token_invalid": "The access token is invalid or not found in the request.",
    "rate_limit_exceeded": "The API rate limit was exceeded. Please try again later.",
    "internal_error": "Something went wrong. Please try again later.",
    "scope_not_authorized": "The user did not authorize the scope required for completing this request.",
    "scope_permission_missed": "Access token is invalid, some fields need additional scopes.",
}
_STATUS = {
    "access_token_invalid": 401,
    "rate_limit_exceeded": 429,
    "internal_error": 500,
    "scope_not_authorized": 401,
    "scope_permission_missed": 400,
    "invalid_params": 400,
}
_FIELDS_REQUIRED = "Fields is required, please provide fields in the request"
_MAX_COUNT = 20
_MAX_IDS = 20
_UTC8 = 8 * 3600
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass
class Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


class ApiError(Exception):
    """A data-endpoint error envelope."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code)
        self.code, self.message = (
            code,
            message or _MESSAGES.get(code, "One or more fields in request is invalid."),
        )


def new_log_id() -> str:
    """14-digit UTC+8 timestamp + 20 hex chars, like the recorded x-tt-logid values."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() + _UTC8))
    return f"{stamp}{random.getrandbits(80):020X}"


@dataclass
class _Seen:
    """Per-request note of the account the request's credential belongs to (None until recognised)."""

    account: str | None = None


class SandboxApi:
    """State + endpoint logic of one simulated TikTok app and its accounts."""

    def __init__(
        self, config: SandboxConfig, client_key: str, client_secret: str,
        initial_refresh_tokens: Mapping[str, str] | str,
    ) -> None:
        """``initial_refresh_tokens``: account name -> its first refresh token (a str: the first account's)."""
        self.config = config
        self.client_key, self.client_secret = client_key, client_secret
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = build_accounts(config, client_key)
        self.tokens = TokenRegistry()
        if isinstance(initial_refresh_tokens, str):
            initial_refresh_tokens = {next(iter(self.accounts)): initial_refresh_tokens}
        for name, token in initial_refresh_tokens.items():
            self.account_named(name)  # KeyError for a name the config does not have
            self.tokens.new_family(name, config.refresh_ttl_seconds, token=token)
            self.tokens.issue_code(name, code=token)  # the initial token also works as a `code`
        self._windows: dict[Any, deque[float]] = {}
        self._fault_rng = random.Random(config.seed ^ 0x5EED)
        self._empty_cursors: set[int] = set()
        self._issued_cursors: set[int] = set()
        self.deleted_during_paging: list[str] = []
        self._pages_served = 0  # video/list pages since reset_faults (publish_during_paging_after)
        self.fault_counter = 0
        self.request_counts: dict[str, int] = {}
        self.status_counts: dict[int, int] = {}
        self.request_counts_by_account: dict[str, dict[str, int]] = {}
        self.status_counts_by_account: dict[str, dict[int, int]] = {}
        self.query_batch_sizes: list[int] = []  # ids per authorized video/query request (benchmarks/tests)
        self.reset_counts()

    # ---- accounts ----------------------------------------------------------------------------------
    @property
    def account(self) -> Account:
        """The first account (the only one of a single-account sandbox)."""
        return next(iter(self.accounts.values()))

    @property
    def account_names(self) -> list[str]:
        return list(self.accounts)

    def resolve(self, account: str | None) -> str:
        """The account's name (None: the first account); KeyError for an unknown one."""
        if account is None:
            return next(iter(self.accounts))
        self.account_named(account)
        return account

    def account_named(self, account: str | None) -> Account:
        if account is None:
            return self.account
        try:
            return self.accounts[account]
        except KeyError:
            raise KeyError(f"unknown account {account!r} (accounts: {', '.join(self.accounts)})") from None

    def reset_counts(self) -> None:
        with self.lock:
            self.request_counts = {"oauth_token": 0, "user_info": 0, "video_list": 0, "video_query": 0}
            self.status_counts = {}
            self.request_counts_by_account = {
                name: {"oauth_token": 0, "user_info": 0, "video_list": 0, "video_query": 0}
                for name in self.accounts
            }
            self.status_counts_by_account = {name: {} for name in self.accounts}
            self.query_batch_sizes = []

    def reset_faults(self) -> None:
        with self.lock:
            self.fault_counter = 0
            self._pages_served = 0
            self._empty_cursors.clear()
            self._issued_cursors.clear()
            self._fault_rng.seed(self.config.seed ^ 0x5EED)

    # ---- entry point -----------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        path, _, query = target.partition("?")
        if not path.endswith("/"):
            path += "/"
        if path.startswith(consent.AUTHORIZE_PATH):
            return self._consent(path, query, headers, body)
        endpoint = ROUTES.get(path)
        if endpoint is None:
            return self._json(404, {"data": {}, "error": self._err("not_found", "Unknown path.")})
        cfg = self.config
        faults = cfg.faults
        with self.lock:
            self.request_counts[endpoint] = self.request_counts.get(endpoint, 0) + 1
            self.fault_counter += 1
            n = self.fault_counter
        if cfg.latency_ms > 0:
            time.sleep(cfg.latency_ms / 1000.0)
        if faults.stall_every > 0 and n % faults.stall_every == 0 and faults.stall_seconds > 0:
            time.sleep(faults.stall_seconds)
        oauth = endpoint.startswith("oauth")
        seen = _Seen()
        try:
            resp = self._inject(n, oauth)
            if resp is None:
                if method != _METHODS[endpoint]:
                    raise ApiError("invalid_params", f"Method {method} is not allowed here.")
                resp = (
                    self._oauth(endpoint, headers, body, seen)
                    if oauth
                    else self._data(endpoint, headers, query, body, seen)
                )
        except OAuthError as exc:
            resp = self._oauth_error(exc)
        except ApiError as exc:
            resp = self._api_error(exc, oauth)
        retry_after = faults.retry_after_seconds
        if resp.status == 429 and retry_after is not None:
            resp.headers.append(("Retry-After", f"{retry_after:g}"))
        with self.lock:
            self.status_counts[resp.status] = self.status_counts.get(resp.status, 0) + 1
            if seen.account is not None:
                by_status = self.status_counts_by_account.setdefault(seen.account, {})
                by_status[resp.status] = by_status.get(resp.status, 0) + 1
        return resp

    def _attribute(self, seen: _Seen, account: str | None, endpoint: str) -> None:
        """Count the request for the account its credential belongs to (caller holds the lock)."""
        if account is None:
            return
        seen.account = account
        counts = self.request_counts_by_account.setdefault(account, {})
        counts[endpoint] = counts.get(endpoint, 0) + 1

    def _consent(self, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Response:
        params = consent.parse_params(query, body, headers.get("Content-Type") or "")
        with self.lock:
            people = [
                consent.ConsentAccount(name, acc.user(["display_name"])["display_name"], acc.username)
                for name, acc in self.accounts.items()
            ]
        page = consent.handle(path, params, self.client_key, self.config.granted_scopes, people,
                              self._issue_consented_code)
        if page.location is not None:
            return Response(302, b"", [("Location", page.location)], "text/html; charset=utf-8")
        return Response(page.status, page.html.encode(), [], "text/html; charset=utf-8")

    def _issue_consented_code(
        self, account: str, redirect_uri: str, code_challenge: str | None, scopes: tuple[str, ...]
    ) -> str:
        with self.lock:
            return self.tokens.issue_code(account, redirect_uri, code_challenge, scopes=scopes)

    def effective_scopes(self, scopes: tuple[str, ...] | None) -> tuple[str, ...]:
        """What a grant may use now: the app's live ``granted_scopes``, narrowed to the user's consent."""
        live = self.config.granted_scopes
        return tuple(live) if scopes is None else tuple(s for s in scopes if s in live)

    # ---- responses -------------------------------------------------------------------------------
    @staticmethod
    def _json(status: int, payload: dict[str, Any]) -> Response:
        err = payload.get("error")
        log_id = err["log_id"] if isinstance(err, dict) else payload.get("log_id") or new_log_id()
        return Response(status, _encode(payload).encode(), [("x-tt-logid", log_id)])

    @staticmethod
    def _err(code: str, message: str = "") -> dict[str, str]:
        return {"code": code, "message": message, "log_id": new_log_id()}

    def _ok(self, data: dict[str, Any]) -> Response:
        return self._json(200, {"data": data, "error": self._err("ok")})

    def _api_error(self, exc: ApiError, oauth: bool) -> Response:
        if oauth:  # method errors etc. on OAuth paths keep the OAuth shape
            return self._oauth_error(OAuthError("invalid_request", exc.message))
        return self._json(_STATUS.get(exc.code, 400), {"data": {}, "error": self._err(exc.code, exc.message)})

    def _oauth_error(self, exc: OAuthError) -> Response:
        payload = {"error": exc.error, "error_description": exc.description, "log_id": new_log_id()}
        return self._json(exc.status, payload)

    def _inject(self, n: int, oauth: bool) -> Response | None:
        f = self.config.faults
        if f.status_429_every > 0 and n % f.status_429_every == 0:
            if oauth:
                return self._oauth_error(OAuthError("temporarily_unavailable", "Too many requests.", 429))
            raise ApiError("rate_limit_exceeded")
        if f.status_500_every > 0 and n % f.status_500_every == 0:
            if oauth:
                return self._oauth_error(OAuthError("server_error", "Internal server error.", 500))
            raise ApiError("internal_error")
        if f.error_envelope_200_every > 0 and n % f.error_envelope_200_every == 0:
            if oauth:
                return self._oauth_error(OAuthError("server_error", "Internal server error.", 200))
            return self._json(
                200, {"data": {}, "error": self._err("internal_error", _MESSAGES["internal_error"])}
            )
        if f.undecodable_every > 0 and n % f.undecodable_every == 0:
            return Response(200, b'{"data":{"videos":[{"id":"7', [("x-tt-logid", new_log_id())])
        return None

    # ---- OAuth -----------------------------------------------------------------------------------
    def _oauth(self, endpoint: str, headers: Mapping[str, str], body: bytes, seen: _Seen) -> Response:
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise OAuthError("invalid_request", "The request parameters are malformed.")
        try:
            form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        except UnicodeDecodeError:
            raise OAuthError("invalid_request", "The request parameters are malformed.") from None
        if not form.get("client_key") or not form.get("client_secret"):
            raise OAuthError("invalid_request", "The request parameters are malformed.")
        if form["client_key"] != self.client_key or form["client_secret"] != self.client_secret:
            raise OAuthError("invalid_client", "Client authentication failed.", 401)
        cfg = self.config
        with self.lock:
            credential = form.get("token") or form.get("refresh_token") or form.get("code") or ""
            self._attribute(seen, self.tokens.account_of(credential), endpoint)
            if endpoint == "oauth_revoke":
                if not form.get("token"):
                    raise OAuthError("invalid_request", "The request parameters are malformed.")
                self.tokens.revoke_access(form["token"])  # that account only; unknown tokens: a no-op
                return self._json(200, {})
            grant_type = form.get("grant_type")
            if not grant_type:
                raise OAuthError("invalid_request", "The request parameters are malformed.")
            if grant_type == "refresh_token":
                if not form.get("refresh_token"):
                    raise OAuthError("invalid_request", "The request parameters are malformed.")
                grant = self.tokens.refresh(
                    form["refresh_token"], cfg.access_ttl_seconds, cfg.strict_rotation
                )
            elif grant_type == "authorization_code":
                if not form.get("code"):
                    raise OAuthError("invalid_request", "The request parameters are malformed.")
                grant = self.tokens.exchange_code(
                    form["code"],
                    form.get("redirect_uri"),
                    form.get("code_verifier"),
                    cfg.access_ttl_seconds,
                    cfg.refresh_ttl_seconds,
                )
            else:
                raise OAuthError("unsupported_grant_type", "The grant type is not supported.")
            open_id = self.accounts[grant.account].user(["open_id"])["open_id"]
            scope = ",".join(self.effective_scopes(grant.scopes))
        return self._json(
            200,
            {
                "access_token": grant.access_token,
                "expires_in": grant.expires_in,
                "open_id": open_id,
                "refresh_expires_in": grant.refresh_expires_in,
                "refresh_token": grant.refresh_token,
                "scope": scope,
                "token_type": "Bearer",
            },
        )

    # ---- data endpoints --------------------------------------------------------------------------
    def _data(
        self, endpoint: str, headers: Mapping[str, str], query: str, body: bytes, seen: _Seen
    ) -> Response:
        cfg = self.config
        auth = headers.get("Authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        now = time.monotonic()
        with self.lock:
            acc = self.tokens.check_access(token, cfg.faults.invalidate_access_after) if token else None
            if acc is None:
                raise ApiError("access_token_invalid")
            self._attribute(seen, acc.account, endpoint)
            account = self.accounts[acc.account]
            granted = self.effective_scopes(acc.scopes)
            if cfg.rate_limit > 0:
                scope = cfg.rate_limit_scope  # "app" (default): every account's tokens share one window
                key: Any = (
                    (endpoint, token) if scope == "token" else (endpoint, acc.account) if scope == "account"
                    else endpoint
                )
                window = self._windows.setdefault(key, deque())
                while window and window[0] <= now - cfg.rate_window_seconds:
                    window.popleft()
                if len(window) >= cfg.rate_limit:
                    raise ApiError("rate_limit_exceeded")
                window.append(now)
        fields = self._fields(query, USER_FIELD_SCOPES if endpoint == "user_info" else None, granted)
        if endpoint == "user_info":
            with self.lock:
                data: dict[str, Any] = {"user": account.user(fields)}
        else:
            payload = self._body(body, allow_empty=endpoint == "video_list")
            data = (
                self._video_list(account, payload, fields)
                if endpoint == "video_list"
                else self._video_query(account, payload, fields)
            )
        with self.lock:
            acc.served += 1
        return self._ok(data)

    def _fields(self, query: str, scopes: dict[str, str] | None, granted: Sequence[str]) -> list[str]:
        raw = parse_qs(query, keep_blank_values=True).get("fields", [""])[0]  # decodes %2C too
        fields = [f.strip() for f in raw.split(",") if f.strip()]
        if not fields:
            raise ApiError("invalid_params", _FIELDS_REQUIRED)
        known = scopes if scopes is not None else dict.fromkeys(VIDEO_FIELDS, SCOPE_VIDEO)
        unknown = [f for f in fields if f not in known]
        if unknown:
            raise ApiError("invalid_params", f"Invalid fields: {','.join(unknown)}")
        if any(known[f] not in granted for f in fields):
            raise ApiError(self.config.scope_error_code)
        return fields

    @staticmethod
    def _body(body: bytes, allow_empty: bool) -> dict[str, Any]:
        if not body.strip() and allow_empty:
            return {}
        try:
            payload = json.loads(body)
        except ValueError:
            raise ApiError("invalid_params", "Request body is not valid JSON.") from None
        if not isinstance(payload, dict):
            raise ApiError("invalid_params", "Request body must be a JSON object.")
        return payload

    @staticmethod
    def _int_param(payload: dict[str, Any], key: str, default: int) -> int:
        value = payload.get(key)
        if value is None:
            return default
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ApiError("invalid_params", f"{key} must be an integer.")

    def _video_list(self, account: Account, payload: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        cursor = self._int_param(payload, "cursor", 0)
        max_count = self._int_param(payload, "max_count", 10)
        if cursor < 0:
            raise ApiError("invalid_params", "cursor must not be negative.")
        if not 1 <= max_count <= _MAX_COUNT:
            raise ApiError("invalid_params", f"max_count must be between 1 and {_MAX_COUNT}.")
        with self.lock:
            if self.config.faults.ignore_custom_cursor and cursor not in self._issued_cursors:
                cursor = 0  # an API that only honours the cursors it issued: a custom one reads from the top
            items, has_more = account.page(cursor, max_count)
            if self.config.faults.short_pages and has_more:
                items = self._shorten(items, cursor)
            if items:
                next_cursor = items[-1].create_time_ms
            else:
                next_cursor = cursor if has_more else 0
            if self.config.faults.ignore_custom_cursor:
                self._issued_cursors.add(next_cursor)
            videos = account.render(items, fields, self.config.extra_fields)
            publish_after = self.config.faults.publish_during_paging_after
            self._pages_served += 1
            if publish_after > 0 and self._pages_served == publish_after:
                account.add(1, None)  # the creator posts while a client is paging (after this page)
            delete_after = self.config.faults.delete_during_paging_after
            if delete_after > 0 and self._pages_served == delete_after and len(account):
                middle = account.all_videos()[len(account) // 2]
                account.delete(middle.id)  # ... or deletes one
                self.deleted_during_paging.append(middle.id)
        return {"videos": videos, "cursor": next_cursor, "has_more": has_more}

    def _shorten(self, items: list[Any], cursor: int) -> list[Any]:
        """Short page: k < max_count items (k=0 about 1 in 5). Never empty on the first page (cursor 0),
        and never empty twice in a row for the same cursor, so an unchanged cursor always progresses."""
        rnd = self._fault_rng.random
        if cursor > 0 and cursor not in self._empty_cursors and rnd() < 0.2:
            self._empty_cursors.add(cursor)
            return []
        self._empty_cursors.discard(cursor)
        return items[: 1 + int(rnd() * (len(items) - 1))] if len(items) > 1 else items

    def _video_query(self, account: Account, payload: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        filters = payload.get("filters")
        ids = filters.get("video_ids") if isinstance(filters, dict) else None
        if not isinstance(ids, list) or not ids:
            raise ApiError("invalid_params", "filters.video_ids is required.")
        with self.lock:
            self.query_batch_sizes.append(len(ids))
        if len(ids) > _MAX_IDS:
            raise ApiError("invalid_params", f"At most {_MAX_IDS} video_ids are allowed.")
        if not all(isinstance(i, str) and i.isdigit() for i in ids):
            raise ApiError("invalid_params", "video_ids must be numeric strings.")
        with self.lock:
            videos = account.render(account.lookup(ids), fields, self.config.extra_fields)
        return {"videos": videos, "cursor": 0, "has_more": False}
