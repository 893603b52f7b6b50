"""TikTokClient against `responses`: requests, retries, error mapping, pagination, query batching, secrets."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
import requests
import responses
from responses import matchers

from tiktok_organic_dagster.tiktok.client import TikTokClient
from tiktok_organic_dagster.tiktok.errors import (
    CursorStuckError,
    MissingScopeError,
    RateLimitedError,
    ReauthorizationRequired,
    TikTokApiError,
    TikTokTransportError,
)

BASE = "https://open.tiktokapis.com"
TOKEN_URL = f"{BASE}/v2/oauth/token/"
USER_URL = f"{BASE}/v2/user/info/"
LIST_URL = f"{BASE}/v2/video/list/"
QUERY_URL = f"{BASE}/v2/video/query/"
SECRET = "client-secret-Zq81xV"
ENV_RT = "rft.env-refresh-token-111"
ACCESS = "act.access-token-AAA111!5259"
ROTATED = "rft.rotated-refresh-token-222"
SECRETS = (SECRET, ENV_RT, ACCESS, ROTATED)


def ok(data: dict) -> dict:
    return {"data": data, "error": {"code": "ok", "message": "", "log_id": "20260101000000ABC"}}


def err(code: str, message: str = "nope") -> dict:
    return {"data": {}, "error": {"code": code, "message": message, "log_id": "20260101000000DEF"}}


def token_body(access: str = ACCESS, refresh: str = ROTATED, scope: str | None = None) -> dict:
    body = {"access_token": access, "refresh_token": refresh, "expires_in": 86400,
            "refresh_expires_in": 31536000, "open_id": "open-1", "token_type": "Bearer"}
    if scope is not None:
        body["scope"] = scope
    return body


@pytest.fixture
def rs():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def make_client(tmp_path):
    def make(**kw) -> TikTokClient:
        opts = dict(client_id="ck-1", client_secret=SECRET, refresh_token=ENV_RT,
                    token_store_path=str(tmp_path / "tokens.json"), backoff_base_seconds=0.01,
                    backoff_max_seconds=0.05, max_retries=4, request_timeout_seconds=2.0)
        opts.update(kw)
        return TikTokClient(**opts)

    return make


def calls_to(rs, url_prefix: str) -> list:
    return [c for c in rs.calls if c.request.url.startswith(url_prefix)]


def test_client_user_info_request_shape(rs, make_client):
    rs.post(TOKEN_URL, json=token_body(scope="user.info.basic,video.list"))
    rs.get(USER_URL, json=ok({"user": {"open_id": "open-1", "display_name": "D"}}))
    client = make_client()
    assert client.user_info(["open_id", "display_name"]) == {"open_id": "open-1", "display_name": "D"}
    token_req, user_req = rs.calls[0].request, rs.calls[1].request
    assert token_req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = dict(pair.split("=", 1) for pair in token_req.body.split("&"))
    assert form["client_key"] == "ck-1" and form["grant_type"] == "refresh_token"
    assert "refresh_token" in form and "client_id" not in form
    assert user_req.url == f"{USER_URL}?fields=open_id,display_name"  # literal commas
    assert user_req.headers["Authorization"] == f"Bearer {ACCESS}"
    stats = client.stats
    assert stats.requests["oauth_token"] == 1 and stats.requests["user_info"] == 1
    assert stats.total_requests == 2 and stats.refreshes == 1
    assert client.open_id() == "open-1"  # from the token response, no extra request
    assert len(rs.calls) == 2


def test_client_session_reused_and_pool_sized(rs, make_client):
    client = make_client(query_parallelism=8)
    session = client._rt().session
    adapter = session.get_adapter("https://open.tiktokapis.com/")
    assert adapter._pool_maxsize >= 8
    rs.post(TOKEN_URL, json=token_body())
    rs.get(USER_URL, json=ok({"user": {"open_id": "o"}}))
    client.user_info(["open_id"])
    client.user_info(["open_id"])
    assert client._rt().session is session


@pytest.mark.parametrize("retry_after", [None, "0.2"])
def test_client_429_burst_recovers(rs, make_client, retry_after):
    rs.post(TOKEN_URL, json=token_body())
    headers = {"Retry-After": retry_after} if retry_after else {}
    for _ in range(3):
        rs.get(USER_URL, json=err("rate_limit_exceeded"), status=429, headers=headers)
    rs.get(USER_URL, json=ok({"user": {"open_id": "o"}}))
    client = make_client()
    start = time.monotonic()
    assert client.user_info(["open_id"]) == {"open_id": "o"}
    elapsed = time.monotonic() - start
    stats = client.stats
    assert stats.rate_limited == 3 and stats.retries == 3 and stats.requests["user_info"] == 4
    if retry_after:
        assert elapsed >= 0.6  # Retry-After honoured on each of the three 429s
    else:
        assert elapsed < 0.5  # tiny jittered backoff from the config


def test_client_retry_after_beyond_max_fails_clearly(rs, make_client):
    rs.post(TOKEN_URL, json=token_body())
    rs.get(USER_URL, json=err("rate_limit_exceeded"), status=429, headers={"Retry-After": "3600"})
    client = make_client(max_retry_after_seconds=60)
    with pytest.raises(RateLimitedError, match="3600s") as info:
        client.user_info(["open_id"])
    assert info.value.retry_after == 3600
    assert len(calls_to(rs, USER_URL)) == 1


def test_client_429_exhausted_raises_rate_limited(rs, make_client):
    rs.post(TOKEN_URL, json=token_body())
    rs.get(USER_URL, json=err("rate_limit_exceeded"), status=429)
    client = make_client(max_retries=2)
    with pytest.raises(RateLimitedError, match="after 3 attempts"):
        client.user_info(["open_id"])
    assert len(calls_to(rs, USER_URL)) == 3


def test_client_500_burst_recovers_and_exhaustion_is_bounded(rs, make_client):
    rs.post(TOKEN_URL, json=token_body())
    rs.get(USER_URL, json=err("internal_error"), status=500)
    rs.get(USER_URL, body="<html>bad gateway</html>", status=502)
    rs.get(USER_URL, json=ok({"user": {"open_id": "o"}}))
    client = make_client()
    assert client.user_info(["open_id"]) == {"open_id": "o"}
    assert client.stats.retries == 2

    rs.replace(responses.GET, USER_URL, json=err("internal_error"), status=503)
    with pytest.raises(TikTokApiError) as info:
        client.user_info(["open_id"])
    assert info.value.status == 503 and "gave up after 5 attempts" in str(info.value)
    assert len(calls_to(rs, USER_URL)) == 3 + 5


def test_client_other_4xx_not_retried(rs, make_client):
    rs.post(TOKEN_URL, json=token_body())
    rs.get(USER_URL, json=err("invalid_params", "Fields is required"), status=400)
    client = make_client()
    with pytest.raises(TikTokApiError) as info:
        client.user_info(["open_id"])
    assert info.value.code == "invalid_params" and info.value.status == 400
    assert info.value.log_id == "20260101000000DEF"
    assert len(calls_to(rs, USER_URL)) == 1 and client.stats.retries == 0


def test_client_error_envelope_under_200(rs, make_client):
    rs.post(TOKEN_URL, json=token_body())
    rs.get(USER_URL, json=err("internal_error"))
    rs.get(USER_URL, json=err("rate_limit_exceeded"))
    rs.get(USER_URL, json=ok({"user": {"open_id": "o"}}))
    client = make_client()
    assert client.user_info(["open_id"]) == {"open_id": "o"}  # retryable codes under 200 are retried
    assert client.stats.retries == 2
    rs.replace(responses.GET, USER_URL, json=err("invalid_params"))
    with pytest.raises(TikTokApiError, match="invalid_params"):  # other codes under 200 fail at once
        client.user_info(["open_id"])
    assert len(calls_to(rs, USER_URL)) == 4


def test_client_undecodable_body_retried(rs, make_client):
    rs.post(TOKEN_URL, json=token_body())
    rs.get(USER_URL, body='{"data": {"user": ', status=200)
    rs.get(USER_URL, json=ok({"user": {"open_id": "o"}}))
    client = make_client()
    assert client.user_info(["open_id"]) == {"open_id": "o"}
    assert client.stats.retries == 1
    rs.replace(responses.GET, USER_URL, body="garbage", status=200)
    with pytest.raises(TikTokTransportError, match="undecodable"):
        client.user_info(["open_id"])


@pytest.mark.parametrize("exc", [requests.exceptions.ReadTimeout("Read timed out."),
                                 requests.exceptions.ConnectionError("Connection refused"),
                                 requests.exceptions.ChunkedEncodingError("Connection broken")])
def test_client_timeout_and_connection_errors_retried(rs, make_client, exc):
    rs.post(TOKEN_URL, json=token_body())
    rs.get(USER_URL, body=exc)
    rs.get(USER_URL, body=exc)
    rs.get(USER_URL, json=ok({"user": {"open_id": "o"}}))
    client = make_client()
    assert client.user_info(["open_id"]) == {"open_id": "o"}
    assert client.stats.retries == 2
    rs.replace(responses.GET, USER_URL, body=exc)
    with pytest.raises(TikTokTransportError, match="gave up after 5 attempts"):
        client.user_info(["open_id"])


def test_client_access_token_invalid_refreshes_once_and_repeats(rs, make_client):
    second = "act.second-access-BBB"
    rs.post(TOKEN_URL, json=token_body())
    rs.post(TOKEN_URL, json=token_body(access=second, refresh="rft.third-333"))
    rs.get(USER_URL, json=err("access_token_invalid"), status=401,
           match=[matchers.header_matcher({"Authorization": f"Bearer {ACCESS}"})])
    rs.get(USER_URL, json=ok({"user": {"open_id": "o"}}),
           match=[matchers.header_matcher({"Authorization": f"Bearer {second}"})])
    client = make_client()
    assert client.user_info(["open_id"]) == {"open_id": "o"}
    assert client.stats.refreshes == 2 and client.stats.retries == 0
    stored = json.loads((client._rt().store.path).read_text())["entries"]["tiktok_organic"]
    assert stored["refresh_token"] == "rft.third-333" and stored["access_token"] == second


def test_client_access_token_invalid_twice_fails_after_one_refresh(rs, make_client):
    rs.post(TOKEN_URL, json=token_body())
    rs.post(TOKEN_URL, json=token_body(access="act.second-access-CCC", refresh="rft.x-444"))
    rs.get(USER_URL, json=err("access_token_invalid"), status=401)
    client = make_client()
    with pytest.raises(TikTokApiError, match="rejected again"):
        client.user_info(["open_id"])
    assert len(calls_to(rs, TOKEN_URL)) == 2 and len(calls_to(rs, USER_URL)) == 2


def test_client_refreshes_again_when_a_token_that_worked_is_revoked(rs, make_client):
    """Two streams share the token. Stream A refreshes after a 401; stream B uses the new token successfully;
    then that token is revoked before A's repeat arrives. A's second 401 is a new revocation, not 'fresh
    tokens do not work', so A refreshes once more instead of failing."""
    second, third = "act.second-access-BBB", "act.third-access-CCC"
    rs.post(TOKEN_URL, json=token_body())
    rs.post(TOKEN_URL, json=token_body(access=second, refresh="rft.b-222"))
    rs.post(TOKEN_URL, json=token_body(access=third, refresh="rft.c-333"))
    client = make_client()

    def bearer(token: str) -> list:
        return [matchers.header_matcher({"Authorization": f"Bearer {token}"})]

    def other_stream_then_revoke(request):  # noqa: ANN001, ANN202
        worker = threading.Thread(target=lambda: list(client.iter_video_pages(["id"])))
        worker.start()
        worker.join()
        return 401, {}, json.dumps(err("access_token_invalid"))

    rs.get(USER_URL, json=err("access_token_invalid"), status=401, match=bearer(ACCESS))
    rs.add_callback(responses.GET, USER_URL, callback=other_stream_then_revoke, match=bearer(second))
    rs.get(USER_URL, json=ok({"user": {"open_id": "o"}}), match=bearer(third))
    rs.post(LIST_URL, json=ok({"videos": [{"id": 1}], "cursor": 0, "has_more": False}), match=bearer(second))
    assert client.user_info(["open_id"]) == {"open_id": "o"}
    assert len(calls_to(rs, TOKEN_URL)) == 3 and client.stats.refreshes == 3


def test_client_invalid_grant_fails_fast_with_reauthorize_message(rs, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    rs.post(TOKEN_URL, status=400, json={
        "error": "invalid_grant", "error_description": f"Refresh token {ENV_RT} is invalid or expired.",
        "log_id": "2026X"})
    client = make_client(max_retries=5)
    with pytest.raises(ReauthorizationRequired) as info:
        client.user_info(["open_id"])
    text = str(info.value)
    assert "re-authorize" in text.lower() and "tiktok-organic-authorize" in text
    assert "TIKTOK_REFRESH_TOKEN" in text and "invalid_grant" in text
    assert len(rs.calls) == 1  # exactly one token request, no retries, no data request
    for secret in SECRETS:
        assert secret not in text and secret not in repr(info.value) and secret not in caplog.text


@pytest.mark.parametrize("code,status", [("scope_not_authorized", 401), ("scope_permission_missed", 400)])
def test_client_scope_error_names_missing_scope(rs, make_client, code, status):
    rs.post(TOKEN_URL, json=token_body(scope="user.info.basic,video.list"))
    rs.get(USER_URL, json=err(code, "The user did not authorize the scope"), status=status)
    client = make_client()
    with pytest.raises(MissingScopeError) as info:
        client.user_info(["open_id", "username", "follower_count"])
    e = info.value
    assert set(e.scopes) == {"user.info.profile", "user.info.stats"}
    assert e.scope in e.scopes and "user.info.basic" not in e.scopes
    assert "user.info.stats" in str(e) and "follower_count" in str(e) and e.code == code
    assert len(calls_to(rs, USER_URL)) == 1  # not a retryable, not a refresh trigger


def test_client_scope_error_without_known_grants_lists_candidates(rs, make_client):
    rs.post(TOKEN_URL, json=token_body())  # token response without "scope"
    rs.get(USER_URL, json=err("scope_not_authorized"), status=401)
    rs.post(LIST_URL, json=err("scope_not_authorized"), status=401)
    client = make_client()
    with pytest.raises(MissingScopeError) as info:
        client.user_info(["follower_count"])
    assert info.value.scope == "user.info.stats"
    with pytest.raises(MissingScopeError) as info:
        list(client.iter_video_pages(["id"]))
    assert info.value.scope == "video.list"


def _list_body(ids, cursor, has_more, extra=None):
    videos = [{"id": i, "create_time": 1700000000, **(extra or {})} for i in ids]
    return ok({"videos": videos, "cursor": cursor, "has_more": has_more})


def test_client_pagination_short_empty_pages_string_cursor_dedupe(rs, make_client):
    rs.post(TOKEN_URL, json=token_body())
    first = _list_body([7000000000000000001, "7000000000000000002"], 1700000000000, True,
                       {"is_brand_new": True})
    rs.post(LIST_URL, json=first, match=[matchers.json_params_matcher({"max_count": 20})])
    rs.post(LIST_URL, json=_list_body([], "1699999000000", True),
            match=[matchers.json_params_matcher({"max_count": 20, "cursor": 1700000000000})])
    rs.post(LIST_URL, json=_list_body(["7000000000000000002", "7000000000000000003"], 1699998000000, True),
            match=[matchers.json_params_matcher({"max_count": 20, "cursor": 1699999000000})])
    rs.post(LIST_URL, json=_list_body(["7000000000000000004"], 1699997000000, False),
            match=[matchers.json_params_matcher({"max_count": 20, "cursor": 1699998000000})])
    client = make_client()
    pages = list(client.iter_video_pages(["create_time", "is_brand_new"]))
    ids = [v["id"] for p in pages for v in p]
    assert ids == [f"700000000000000000{i}" for i in (1, 2, 3, 4)]
    assert all(isinstance(i, str) for i in ids)
    assert pages[0][0]["is_brand_new"] is True  # unknown fields kept as-is
    assert client.stats.pages == 4 and client.stats.requests["video_list"] == 4
    assert calls_to(rs, LIST_URL)[0].request.url == f"{LIST_URL}?fields=id,create_time,is_brand_new"


def test_client_pagination_stop_ends_after_yielding_that_page(rs, make_client):
    rs.post(TOKEN_URL, json=token_body())
    rs.post(LIST_URL, json=_list_body(["1", "2"], 10, True))
    rs.post(LIST_URL, json=_list_body(["3", "4"], 5, True))
    client = make_client()
    seen = []
    for page in client.iter_video_pages(["id"], stop=lambda p: any(v["id"] == "3" for v in p)):
        seen.extend(v["id"] for v in page)
    assert seen == ["1", "2", "3", "4"]
    assert len(calls_to(rs, LIST_URL)) == 2


def test_client_pagination_stuck_cursor_raises_after_bound(rs, make_client):
    rs.post(TOKEN_URL, json=token_body())
    rs.post(LIST_URL, json=_list_body(["1"], 500, True))
    rs.post(LIST_URL, json=_list_body([], 500, True))
    client = make_client()
    got = []
    with pytest.raises(CursorStuckError, match="cursor 500"):
        for page in client.iter_video_pages(["id"]):
            got.extend(page)
    assert [v["id"] for v in got] == ["1"]
    assert len(calls_to(rs, LIST_URL)) == 4  # first page + 3 non-moving empty pages


def test_client_pagination_has_more_without_cursor_raises(rs, make_client):
    rs.post(TOKEN_URL, json=token_body())
    rs.post(LIST_URL, json=ok({"videos": [{"id": "1"}], "has_more": True}))
    with pytest.raises(TikTokApiError, match="no cursor"):
        list(make_client().iter_video_pages(["id"]))


def test_client_query_videos_batches_parallel_and_missing(rs, make_client):
    ids = [str(7100000000000000000 + i) for i in range(45)]
    dropped = {ids[3], ids[30], ids[44]}
    batch_sizes: list[int] = []
    in_flight = [0, 0]  # current, max
    lock = threading.Lock()

    def query(request):
        wanted = json.loads(request.body)["filters"]["video_ids"]
        with lock:
            batch_sizes.append(len(wanted))
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
        time.sleep(0.1)
        with lock:
            in_flight[0] -= 1
        videos = [{"id": int(i), "view_count": 1} for i in reversed(wanted) if i not in dropped]
        return 200, {}, json.dumps(ok({"videos": videos, "cursor": 0, "has_more": False}))

    rs.post(TOKEN_URL, json=token_body())
    rs.add_callback(responses.POST, QUERY_URL, callback=query)
    client = make_client(query_parallelism=3)
    result = client.query_videos(ids + ids[:5], ["view_count"])
    assert sorted(batch_sizes) == [5, 20, 20]
    assert [v["id"] for v in result.videos] == [i for i in ids if i not in dropped]
    assert sorted(result.missing_ids) == sorted(dropped)
    assert set(result.by_id) == set(ids) - dropped
    assert in_flight[1] >= 2  # batches ran concurrently
    assert calls_to(rs, QUERY_URL)[0].request.url == f"{QUERY_URL}?fields=id,view_count"
    assert client.query_videos([], ["id"]).videos == []


def test_client_no_secret_in_logs_or_exceptions(rs, make_client, caplog):
    """Server echoes secrets in messages; requests errors carry URLs: nothing secret may surface."""
    caplog.set_level(logging.DEBUG)
    rs.post(TOKEN_URL, json=token_body())
    rs.get(USER_URL, json=err("internal_error", f"boom client_secret={SECRET} token {ACCESS}"), status=500)
    rs.get(USER_URL, body=requests.exceptions.ConnectionError(f"failed for {USER_URL}?x={ROTATED}"))
    rs.get(USER_URL, json=err("invalid_params", f"bad refresh {ROTATED} and {ENV_RT}"), status=400)
    client = make_client()
    with pytest.raises(TikTokApiError) as info:
        client.user_info(["open_id"])
    client_repr = repr(client) + str(client)
    texts = [str(info.value), repr(info.value), caplog.text, client_repr,
             "".join(r.getMessage() for r in caplog.records)]
    assert "retry 1/4" in caplog.text and "retry 2/4" in caplog.text
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
    logging.getLogger("tiktok_organic_dagster.tiktok").warning("leak? %s %s", SECRET, ACCESS)
    assert SECRET not in caplog.text and ACCESS not in caplog.text


def test_client_log_filter_redacts_args_and_tracebacks(make_client, caplog):
    caplog.set_level(logging.DEBUG)
    make_client()._rt()  # registers the client secret with the redactor
    log = logging.getLogger("tiktok_organic_dagster.tiktok")
    try:
        raise ValueError(f"boom {SECRET} Bearer {ACCESS}")
    except ValueError:
        log.exception("failed with %s / %r", SECRET, {"refresh_token": "rft.some-other-token"})
    assert "failed with" in caplog.text and "Traceback" in caplog.text
    for secret in (SECRET, ACCESS, "rft.some-other-token"):
        assert secret not in caplog.text
