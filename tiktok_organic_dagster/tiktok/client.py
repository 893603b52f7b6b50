"""TikTok Open API v2 client (Login Kit refresh + Display API): OAuth refresh with a persistent token store,
retries, a client-side rate budget per endpoint, and user/info, video/list and video/query.

Plain Python: the Dagster resource in ``defs/`` only builds one of these. State (session, budgets, tokens)
is built lazily on first call, so tests and scripts can do ``TikTokClient(client_id=..., ...).user_info([...])``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from tiktok_organic_dagster.names import DEFAULT_API_BASE_URL, REFRESH_TOKEN_ENV
from tiktok_organic_dagster.tiktok.errors import (
    RateLimitedError,
    TikTokApiError,
    TikTokConfigError,
    TikTokError,
    TikTokTransportError,
)
from tiktok_organic_dagster.tiktok.paging import page_videos
from tiktok_organic_dagster.tiktok.query import QueryResult, query_in_batches
from tiktok_organic_dagster.tiktok.rate_budget import RateBudget
from tiktok_organic_dagster.tiktok.redaction import client_logger, redact, register_secret
from tiktok_organic_dagster.tiktok.responses import (
    AuthInvalid,
    Data,
    Fatal,
    Retry,
    ScopeMissing,
    classify_data_response,
    classify_token_response,
    give_up,
)
from tiktok_organic_dagster.tiktok.runtime import Runtime
from tiktok_organic_dagster.tiktok.scopes import scope_error
from tiktok_organic_dagster.tiktok.slicing import S, SlicedListing, page_sliced
from tiktok_organic_dagster.tiktok.stats import ClientStats
from tiktok_organic_dagster.tiktok.tokens import TokenEntry, entry_from_token_response, hash_token

logger = client_logger()

PATHS = {"oauth_token": "/v2/oauth/token/", "user_info": "/v2/user/info/",
         "video_list": "/v2/video/list/", "video_query": "/v2/video/query/"}


_init_lock = threading.Lock()


@dataclass
class TikTokClient:
    """TikTok Open API v2 client (Login Kit refresh + Display API) for one account/source.

    The refresh token is taken from the token store entry ``token_store_key`` unless ``refresh_token``
    (from ``TIKTOK_REFRESH_TOKEN``) holds a *new* token; leave it empty when ``tiktok-organic-authorize``
    wrote the store entry. Store path: ``token_store_path`` -> ``$TIKTOK_TOKEN_STORE`` ->
    ``$DAGSTER_HOME/tiktok_token_store.json`` -> ``./.tiktok_tokens.json``.
    """

    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(default="", repr=False)
    refresh_token_env: str = REFRESH_TOKEN_ENV
    api_base_url: str = DEFAULT_API_BASE_URL
    token_store_path: str | None = None
    token_store_key: str = "tiktok_organic"
    request_timeout_seconds: float = 30.0
    max_retries: int = 5
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    max_retry_after_seconds: float = 300.0
    requests_per_minute: int = 600
    rate_window_seconds: float = 60.0
    # Even pacing at ``requests_per_minute`` (this run's share of an app shared by several accounts' runs)
    # instead of a sliding-window cap; see rate_budget.
    rate_pacing: bool = False
    # video/query batches in flight at once. The budget is a sliding-window cap (600 per 60 s by default),
    # not a pace: 250 batches (5,000 known videos) may all go within one window, so the refresh takes
    # ~250/8 round trips instead of 250.
    query_parallelism: int = 8
    # video/list time slices paged at once in a full sync (1 = one cursor walk); see slicing.py.
    paging_parallelism: int = 24

    _runtime: Runtime | None = field(default=None, init=False, repr=False, compare=False)

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> TikTokClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session (pooled connections); the client re-creates state if used again."""
        rt, self._runtime = self._runtime, None
        if rt is not None:
            rt.session.close()

    def _rt(self) -> Runtime:
        rt = self._runtime
        if rt is None:
            with _init_lock:
                rt = self._runtime
                if rt is None:
                    register_secret(self.client_secret)
                    rt = self._runtime = Runtime(self)
        return rt

    # ----------------------------------------------------------------- public API
    @property
    def stats(self) -> ClientStats:
        return self._rt().counters.snapshot()

    def user_info(self, fields: Sequence[str]) -> dict:
        """``data.user`` for the authorized account, only the requested fields."""
        data = self._data_call("user_info", "GET", self._url("user_info", fields), None, fields)
        user = data.get("user")
        if not isinstance(user, dict):
            raise TikTokApiError("invalid_response", "user/info response without data.user")
        return user

    def iter_video_pages(
        self, fields: Sequence[str], *, stop: Callable[[list[dict]], bool] | None = None, max_count: int = 20
    ) -> Iterator[list[dict]]:
        """Yield each video/list page's *new* videos (see :func:`paging.page_videos`). ``id`` is always
        requested."""
        fields = list(fields) if "id" in fields else ["id", *fields]
        return page_videos(self._video_list_fetch(fields), stop=stop, max_count=max_count)

    def list_videos_sliced(self, fields: Sequence[str], new_sink: Callable[[], S], *,
                           boundaries: Sequence[int] = ()) -> SlicedListing[S]:
        """Every video once, paged over time slices by ``paging_parallelism`` threads under the endpoint's
        budget (see :mod:`slicing`); raises :class:`SlicingRejected` when the answers do not prove exactness."""
        fields = list(fields) if "id" in fields else ["id", *fields]
        return page_sliced(self._video_list_fetch(fields), new_sink, workers=self.paging_parallelism,
                           boundaries=boundaries)

    def _video_list_fetch(self, fields: list[str]) -> Callable[[dict[str, int]], dict[str, Any]]:
        url = self._url("video_list", fields)
        counters = self._rt().counters

        def fetch(body: dict[str, int]) -> dict[str, Any]:
            data = self._data_call("video_list", "POST", url, body, fields)
            with counters.lock:
                counters.pages += 1
            return data

        return fetch

    def query_videos(self, video_ids: Sequence[str], fields: Sequence[str]) -> QueryResult:
        """Fetch known videos by id (batches of <= 20, ``query_parallelism`` in parallel, own rate budget)."""
        fields = list(fields) if "id" in fields else ["id", *fields]
        url = self._url("video_query", fields)

        def run(batch: list[str]) -> list[dict]:
            data = self._data_call("video_query", "POST", url, {"filters": {"video_ids": batch}}, fields)
            return [v for v in data.get("videos") or () if isinstance(v, dict)]

        return query_in_batches(run, video_ids, self.query_parallelism)

    def preflight(self) -> None:
        """Everything a run needs before its first request, checked without one: credentials, the token store
        (reachable, writable, decodable) and a refresh token to start from."""
        missing = [name for name, value in (("client_id", self.client_id), ("client_secret", self.client_secret))
                   if not value]
        if missing:
            raise TikTokConfigError(f"TikTok client for '{self.token_store_key}': {' and '.join(missing)} empty")
        self._rt().tokens.preflight()

    def refresh_token_days_left(self) -> float | None:
        """Days until the refresh token expires (from ``refresh_expires_in``); None if unknown. No request."""
        entry = self._rt().tokens.entry()
        if entry is None or entry.refresh_expires_at is None:
            return None
        return (entry.refresh_expires_at - time.time()) / 86400.0

    def open_id(self) -> str:
        """The authorized account's ``open_id`` (from the token response; user/info if it was not there)."""
        rt = self._rt()
        rt.tokens.access_token()
        entry = rt.tokens.entry()
        if entry is not None and entry.open_id:
            return entry.open_id
        return str(self.user_info(["open_id"])["open_id"])

    def granted_scopes(self) -> list[str] | None:
        """Scopes granted to the stored token, if known (no request)."""
        entry = self._rt().tokens.entry()
        return list(entry.scopes) if entry is not None and entry.scopes else None

    def exchange_authorization_code(self, code: str, redirect_uri: str) -> TokenEntry:
        """Trade an authorization code for tokens and write them to the store (used by the authorize CLI).

        The entry remembers the hash of the currently configured ``refresh_token`` (if any) as superseded,
        so a stale value left in the environment does not override the new grant.
        """
        rt = self._rt()
        register_secret(code)
        body = self._post_token({"grant_type": "authorization_code", "code": code,
                                 "redirect_uri": redirect_uri})
        descends = hash_token(self.refresh_token) if self.refresh_token else None
        entry = entry_from_token_response(body, now=time.time(), descends_from=descends)
        with rt.store.locked():
            rt.store.put(self.token_store_key, entry)
        return entry

    # ----------------------------------------------------------------- internals
    def _url(self, endpoint: str, fields: Sequence[str]) -> str:
        # Literal commas: percent-encoded commas are reported to break user/info (reference §6 Q1).
        return f"{self._rt().base}{PATHS[endpoint]}?fields={','.join(quote(f, safe='') for f in fields)}"

    def _count_refresh(self) -> None:
        counters = self._rt().counters
        with counters.lock:
            counters.refreshes += 1
        logger.info("TikTok access token refreshed for '%s'", self.token_store_key)

    def _send(self, rt: Runtime, endpoint: str, method: str, url: str,
              **kwargs: Any) -> requests.Response | Retry:
        counters = rt.counters
        with counters.lock:
            counters.requests[endpoint] += 1
        try:
            return rt.session.request(method, url, timeout=rt.timeout, **kwargs)
        except requests.Timeout as exc:
            return Retry("transport", f"timeout ({type(exc).__name__}: {redact(str(exc))})")
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:
            return Retry("transport", f"connection error ({type(exc).__name__}: {redact(str(exc))})")
        except requests.RequestException as exc:
            raise TikTokTransportError(f"{endpoint}: request failed ({type(exc).__name__}: "
                                       f"{redact(str(exc))})") from None

    def _data_call(self, endpoint: str, method: str, url: str, body: dict | None,
                   fields: Sequence[str]) -> dict:
        rt = self._rt()
        tokens = rt.tokens
        budget = rt.budgets[endpoint]
        token = tokens.access_token()
        refreshed = False
        auth_refreshes = 0
        attempt = 0
        while True:
            cached_token, headers = rt.headers_for
            if cached_token != token:
                headers = {"Authorization": f"Bearer {token}"}
                rt.headers_for = (token, headers)
            budget.acquire()
            resp = self._send(rt, endpoint, method, url, json=body, headers=headers)
            result = resp if isinstance(resp, Retry) else classify_data_response(resp)
            if isinstance(result, Data):
                rt.proven_tokens.add(token)
                return result.body
            if isinstance(result, AuthInvalid):
                # A fresh token rejected before it ever worked means refreshing does not help: stop. One
                # that served requests (say, on another stream's thread) was revoked since: refresh again,
                # a bounded number of times.
                if refreshed and token not in rt.proven_tokens:
                    raise TikTokApiError("access_token_invalid",
                                         f"{endpoint}: access token rejected again right after a refresh",
                                         status=result.status)
                auth_refreshes += 1
                if auth_refreshes > self.max_retries:
                    raise TikTokApiError("access_token_invalid",
                                         f"{endpoint}: access token rejected {auth_refreshes} times in a row, "
                                         "each time after a refresh", status=result.status)
                refreshed = True
                logger.info("TikTok %s: access_token_invalid; refreshing and repeating", endpoint)
                token = tokens.invalidate(token)
                continue
            if isinstance(result, ScopeMissing):
                raise scope_error(endpoint, fields, result.error, self.granted_scopes, self._current_scopes)
            if isinstance(result, Fatal):
                raise result.error
            self._before_retry(rt, endpoint, result, attempt, budget)
            attempt += 1
            token = tokens.access_token()

    def _post_token(self, form: dict[str, str]) -> Mapping[str, Any]:
        """POST /v2/oauth/token/ (form-encoded), retried on 429/5xx/network; invalid_grant fails at once."""
        rt = self._rt()
        payload = {"client_key": self.client_id, "client_secret": self.client_secret, **form}
        url = rt.base + PATHS["oauth_token"]
        headers = {"Cache-Control": "no-cache"}
        attempt = 0
        while True:
            resp = self._send(rt, "oauth_token", "POST", url, data=payload, headers=headers)
            result = resp if isinstance(resp, Retry) else classify_token_response(resp, self.refresh_token_env)
            if isinstance(result, Data):
                return result.body
            if isinstance(result, Fatal):
                raise result.error
            self._before_retry(rt, "oauth_token", result, attempt, None)
            attempt += 1

    def _before_retry(self, rt: Runtime, endpoint: str, retry: Retry, attempt: int,
                      budget: RateBudget | None) -> None:
        """Raise if out of retries / told to wait too long; otherwise count, log and sleep."""
        counters = rt.counters
        if retry.kind == "rate":
            with counters.lock:
                counters.rate_limited[endpoint] += 1
        if retry.retry_after is not None and retry.retry_after > self.max_retry_after_seconds:
            raise RateLimitedError(
                f"{endpoint}: server asked to wait {retry.retry_after:.0f}s (Retry-After), more than "
                f"max_retry_after_seconds={self.max_retry_after_seconds:.0f}; try again later",
                retry_after=retry.retry_after, log_id=retry.log_id, status=retry.status)
        if attempt >= self.max_retries:
            raise give_up(endpoint, retry, attempt + 1)
        if retry.retry_after is not None:
            delay = retry.retry_after
            if budget is not None and retry.kind == "rate":
                budget.pause(delay)  # hold the other threads of this endpoint too
        else:
            cap = min(self.backoff_max_seconds, self.backoff_base_seconds * 2**attempt)
            delay = random.uniform(0.0, cap)  # full jitter
        with counters.lock:
            counters.retries[endpoint] += 1
        status = f"HTTP {retry.status}" if retry.status else "no response"
        what = f"rate limited ({retry.message})" if retry.kind == "rate" else retry.message
        logger.warning("TikTok %s: %s (%s); retry %d/%d in %.2fs", endpoint, what, status, attempt + 1,
                       self.max_retries, delay)
        time.sleep(delay)

    def _current_scopes(self, recorded: set[str]) -> set[str]:
        """The stored grant lists every scope TikTok just refused, so it is stale (consent changed after the
        token was issued): one refresh returns the scopes granted now, naming the one actually missing."""
        tokens = self._rt().tokens
        try:
            tokens.invalidate(tokens.access_token())
        except TikTokError:
            return recorded
        return set(self.granted_scopes() or ()) or recorded
