"""TikTokClient against the local sandbox over real HTTP: paging, faults, rotation across processes."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import time

import dagster as dg
import pytest

from tiktok_organic_dagster.defs.resources import TikTokClientResource
from tiktok_organic_dagster.sandbox import Faults
from tiktok_organic_dagster.tiktok.client import TikTokClient
from tiktok_organic_dagster.tiktok.errors import ReauthorizationRequired

FIELDS = ["id", "create_time", "title", "view_count"]


def make_client(server, tmp_path, **kw) -> TikTokClient:
    opts = dict(client_id=server.client_id, client_secret=server.client_secret,
                refresh_token=server.initial_refresh_token, api_base_url=server.base_url,
                token_store_path=str(tmp_path / "tokens.json"), backoff_base_seconds=0.01,
                backoff_max_seconds=0.05, request_timeout_seconds=5.0)
    opts.update(kw)
    return TikTokClient(**opts)


def listed_ids(client: TikTokClient) -> list[str]:
    return [v["id"] for page in client.iter_video_pages(FIELDS) for v in page]


def stored_refresh(tmp_path) -> str:
    return json.loads((tmp_path / "tokens.json").read_text())["entries"]["tiktok_organic"]["refresh_token"]


def test_client_sandbox_pages_1000_videos_exactly_once(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=1000)
    client = make_client(server, tmp_path)
    ids = listed_ids(client)
    assert ids == [v["id"] for v in server.videos()]
    assert len(ids) == len(set(ids)) == 1000
    assert client.stats.pages == server.request_counts()["video_list"] == 50


def test_client_sandbox_access_invalidated_mid_pagination(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=400)
    server.set_faults(Faults(invalidate_access_after=4))
    client = make_client(server, tmp_path)
    ids = listed_ids(client)
    assert ids == [v["id"] for v in server.videos()]  # no gaps, no duplicates
    assert client.stats.refreshes >= 4
    assert stored_refresh(tmp_path) == server.current_refresh_token()
    assert server.status_counts().get(401, 0) == client.stats.refreshes - 1


def test_client_sandbox_faults_and_short_pages_recover(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=200)
    server.set_faults(Faults(status_429_every=5, status_500_every=7, error_envelope_200_every=11,
                             undecodable_every=13, short_pages=True))
    client = make_client(server, tmp_path, max_retries=6)
    ids = listed_ids(client)
    assert ids == [v["id"] for v in server.videos()]
    stats = client.stats
    assert stats.retries >= 5 and stats.rate_limited >= 1
    assert stats.pages > 10  # short pages: more than 200/20 pages, none ended the listing


def test_client_sandbox_retry_after_and_stall_timeout(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=20)
    server.set_faults(Faults(status_429_every=2, retry_after_seconds=0.2))
    client = make_client(server, tmp_path)
    start = time.monotonic()
    client.user_info(["open_id"])
    client.user_info(["display_name"])
    assert time.monotonic() - start >= 0.2 and client.stats.rate_limited >= 1
    server.set_faults(Faults(stall_every=2, stall_seconds=0.6))
    fast = make_client(server, tmp_path, request_timeout_seconds=0.2)
    assert fast.user_info(["open_id"])["open_id"] == server.user()["open_id"]
    assert fast.user_info(["open_id"])["open_id"] == server.user()["open_id"]
    assert fast.stats.retries >= 1


def test_client_sandbox_query_videos_and_missing(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=90)
    truth = server.videos()
    gone = truth[5]["id"]
    server.delete_video(gone)
    client = make_client(server, tmp_path)
    ids = [v["id"] for v in truth] + ["7000000000000000001"]
    result = client.query_videos(ids, ["view_count"])
    assert result.missing_ids == [gone, "7000000000000000001"]
    assert [v["id"] for v in result.videos] == [v["id"] for v in truth if v["id"] != gone]
    assert server.request_counts()["video_query"] == 5  # 91 ids -> batches of <= 20


def test_client_sandbox_rate_budget_prevents_429(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=10, rate_limit=10, rate_window_seconds=0.5)
    client = make_client(server, tmp_path, requests_per_minute=10, rate_window_seconds=0.5)
    for _ in range(25):
        client.user_info(["open_id"])
    assert server.status_counts().get(429, 0) == 0 and client.stats.rate_limited == 0


def test_client_sandbox_revoked_fails_fast(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=10)
    client = make_client(server, tmp_path)
    client.user_info(["open_id"])
    server.revoke_all_tokens()
    server.reset_counts()
    with pytest.raises(ReauthorizationRequired, match="re-authorize"):
        client.user_info(["open_id"])
    assert server.request_counts()["oauth_token"] == 1


def _worker(opts: dict, barrier, results) -> None:
    try:
        client = TikTokClient(**opts)
        barrier.wait(timeout=10)
        user = client.user_info(["open_id"])
        results.put(("ok", user["open_id"], client.stats.refreshes))
    except BaseException as exc:  # report to the parent instead of dying silently
        results.put(("error", repr(exc), 0))


def test_client_sandbox_two_processes_refresh_concurrently(sandbox_factory, tmp_path):
    """Strict rotation + latency: without the lock + re-read one process would get invalid_grant."""
    server = sandbox_factory(video_count=10, latency_ms=150)
    opts = dict(client_id=server.client_id, client_secret=server.client_secret,
                refresh_token=server.initial_refresh_token, api_base_url=server.base_url,
                token_store_path=str(tmp_path / "tokens.json"), backoff_base_seconds=0.01)
    ctx = mp.get_context("fork")
    for round_no in range(2):
        if round_no:
            server.expire_access_tokens()  # both hold a stored token the server now rejects (401)
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(opts, barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=30) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert [o[0] for o in outcomes] == ["ok", "ok"], outcomes
        assert sorted(o[2] for o in outcomes) == [0, 1]  # exactly one of them refreshed
    assert server.request_counts()["oauth_token"] == 2
    assert stored_refresh(tmp_path) == server.current_refresh_token()


def test_client_sandbox_as_dagster_resource_logs_no_secrets(sandbox_factory, tmp_path, caplog):
    """The Dagster resource hands out the plain client; its refresh/429 log records reach the run log redacted."""
    caplog.set_level(logging.DEBUG)
    server = sandbox_factory(video_count=30)
    server.set_faults(Faults(status_429_every=3))

    @dg.asset
    def videos(tiktok: TikTokClientResource) -> int:
        return len([v for page in tiktok.get_client().iter_video_pages(FIELDS) for v in page])

    opts = {k: v for k, v in vars(make_client(server, tmp_path)).items() if not k.startswith("_")}
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([videos], resources={"tiktok": TikTokClientResource(**opts)}, instance=instance)
    assert result.success and result.output_for_node("videos") == 30
    messages = [e.message or "" for e in instance.all_logs(result.run_id)]
    assert any("rate limited" in m for m in messages) and any("refreshed" in m for m in messages)
    secrets = [server.client_secret, server.initial_refresh_token, server.current_refresh_token()]
    store = json.loads((tmp_path / "tokens.json").read_text())["entries"]["tiktok_organic"]
    secrets.append(store["access_token"])
    blob = "\n".join(messages) + caplog.text
    for secret in secrets:
        assert secret and secret not in blob
