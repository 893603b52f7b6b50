"""Request arithmetic behind the benchmark targets (not timed): what an incremental sync and the counter
refresh ask the API for, what the refresh writes, and the large-listing write path. Sandbox over HTTP."""

from __future__ import annotations

import math
import threading
from datetime import datetime, timezone

import pytest

from tiktok_organic_dagster.lake import DeltaCatalog
from tiktok_organic_dagster.names import FULL_SYNC_JOB, SYNC_JOB, SYNC_OP
from tiktok_organic_dagster.sync import videos as sync
from tiktok_organic_dagster.sync.buffer import ChunkBuffer
from tiktok_organic_dagster.tiktok.rate_budget import RateBudget
from tiktok_organic_dagster.tiktok.streams import VIDEO_FIELDS
from tiktok_organic_dagster_tests.fixtures_faults import client_config, expire_stored_access_token
from tiktok_organic_dagster_tests.helpers import expected_video, read_rows, run_job, sandbox_env

FULL, SYNC = FULL_SYNC_JOB, SYNC_JOB
REFRESH = {"ops": {SYNC_OP: {"config": {"refresh_all_counters": True}}}}
DAY = 86400


def _lookback_pages(times_newest_first: list[int], cutoff: int) -> int:
    """Pages of 20 up to and including the first page whose every video is older than the cutoff."""
    pages = 0
    for start in range(0, len(times_newest_first), 20):
        pages += 1
        if all(t < cutoff for t in times_newest_first[start:start + 20]):
            break
    return pages


def _videos_meta(result) -> dict:
    mats = result.asset_materializations_for_node(SYNC_OP)
    meta = next(m.metadata for m in mats if m.asset_key.path[-1] == "videos")
    return {k: getattr(v, "value", v) for k, v in meta.items()}


def _counts(server) -> dict[str, int]:
    counts = server.request_counts()
    return {k: counts.get(k, 0) for k in ("oauth_token", "user_info", "video_list", "video_query")}


def test_incremental_pages_through_a_window_of_several_pages(sandbox_factory, tmp_path):
    """60-day look-back on 1,000 videos over two years: the window holds several pages, plus 45 new."""
    server = sandbox_factory(video_count=1000)
    env = sandbox_env(server, tmp_path, TIKTOK_VIDEOS_LOOKBACK_DAYS="60")
    assert run_job(FULL, env).success
    newest_known = server.videos()[0]["create_time"]
    server.add_videos(45)
    expire_stored_access_token(env)
    server.reset_counts()

    result = run_job(SYNC, env)
    assert result.success
    pages = _lookback_pages([v["create_time"] for v in server.videos()], newest_known - 60 * DAY)
    assert pages >= 6  # 3 pages of new videos and several of the window
    assert _counts(server) == {"oauth_token": 1, "user_info": 1, "video_list": pages, "video_query": 0}
    meta = _videos_meta(result)
    assert meta["sync_type"] == "INCREMENTAL"
    assert meta["rows_inserted"] == 45


def test_sync_lists_everything_without_a_table_or_with_an_empty_one(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=0)
    env = sandbox_env(server, tmp_path)
    result = run_job(SYNC, env)  # no table yet: a full listing (one empty page) creates an empty table
    assert result.success
    assert _videos_meta(result)["sync_type"] == "FULL_TABLE"
    assert _counts(server) == {"oauth_token": 1, "user_info": 1, "video_list": 1, "video_query": 0}
    assert read_rows(env, "videos") == []

    server.add_videos(30)
    server.reset_counts()
    # the table exists but is empty: no look-back anchor, so full again (one cursor walk: two pages)
    result = run_job(SYNC, env, run_config=client_config(server, paging_parallelism=1))
    assert result.success
    assert _videos_meta(result)["sync_type"] == "FULL_TABLE"
    assert _counts(server) == {"oauth_token": 0, "user_info": 1, "video_list": 2, "video_query": 0}
    assert sorted(r["id"] for r in read_rows(env, "videos")) == sorted(v["id"] for v in server.videos())


def test_counter_refresh_batches_ids_and_moves_last_seen_only_for_returned_videos(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=250)
    env = sandbox_env(server, tmp_path)
    assert run_job(FULL, env).success
    before = {r["id"]: r for r in read_rows(env, "videos")}
    truth = server.videos()
    cutoff = truth[0]["create_time"] - 7 * DAY  # default look-back
    deleted = truth[-1]["id"]  # the oldest video: outside the window, only video/query would see it
    server.delete_video(deleted)
    bumped = set(server.bump_counters([truth[0]["id"], *(v["id"] for v in truth[100:106])]))
    server.reset_counts()

    result = run_job(SYNC, env, run_config=REFRESH)
    assert result.success
    current = server.videos()
    pages = _lookback_pages([v["create_time"] for v in current], cutoff)
    listed = {v["id"] for v in current[:pages * 20]}
    known_older = [i for i, r in before.items()
                   if i not in listed and r["create_time"] < datetime.fromtimestamp(cutoff, timezone.utc)]
    assert len(known_older) > 200  # most of the account is outside the window

    # ceil(known / 20) video/query requests, none with more than 20 ids, every known older id asked once
    expected = math.ceil(len(known_older) / 20)
    assert _counts(server) == {"oauth_token": 0, "user_info": 1, "video_list": pages, "video_query": expected}
    sizes = server.query_batch_sizes()
    assert len(sizes) == expected and max(sizes) <= 20 and sum(sizes) == len(known_older)

    after = {r["id"]: r for r in read_rows(env, "videos")}
    seen_at = after[truth[0]["id"]]["_last_seen_at"]
    assert seen_at > before[truth[0]["id"]]["_last_seen_at"]
    for vid, row in after.items():
        if vid == deleted:  # not returned by the API: kept (incremental), last seen NOT moved
            assert row["_last_seen_at"] == before[vid]["_last_seen_at"]
            continue
        assert row["_last_seen_at"] == seen_at, vid  # every returned video, changed or not
        changed = vid in bumped
        assert (row["_synced_at"] == seen_at) is changed, vid  # _synced_at = payload last changed
        assert {k: row[k] for k in VIDEO_FIELDS if k.endswith("_count")} == \
            {k: v for k, v in expected_video(next(v for v in current if v["id"] == vid)).items()
             if k.endswith("_count")}, vid
    meta = _videos_meta(result)
    assert meta["videos_not_returned"] == 1
    assert meta["videos_not_returned_sample"] == deleted
    assert meta["counter_refresh_ids"] == len(known_older)
    assert meta["counter_refresh_changed"] == len(bumped - listed)
    assert meta["rows_updated"] == len(bumped)  # payload changes, not rows rewritten
    assert meta["rows_seen_unchanged"] == len(after) - 1 - len(bumped)


def test_large_listing_streams_into_the_overwrite(sandbox_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(sync, "STREAM_MIN_ROWS", 1)  # the path 100k-video accounts take
    server = sandbox_factory(video_count=130, extra_fields=True)
    env = sandbox_env(server, tmp_path)
    assert run_job(FULL, env).success
    rows = {r["id"]: r for r in read_rows(env, "videos")}
    assert len(rows) == 130
    for video in server.videos():
        for field, value in expected_video(video).items():
            assert rows[video["id"]][field] == value
    history = read_rows(env, "videos_history")
    assert sorted(r["id"] for r in history) == sorted(rows)


def _records(n: int, offset: int = 0) -> list[dict]:
    return [{"id": str(7_300_000_000_000_000_000 + offset + i), "create_time": 1_760_000_000 + i, "view_count": i}
            for i in range(n)]


def test_streamed_overwrite_replays_the_buffer_after_losing_a_commit_race(tmp_path, monkeypatch):
    monkeypatch.setattr(sync, "STREAM_MIN_ROWS", 0)
    catalog = DeltaCatalog(root_uri=str(tmp_path / "lake"), commit_retry_backoff_seconds=0.01)
    uri = catalog.table_uri("raw", "tiktok_organic", "videos")
    now = datetime.now(timezone.utc)
    extra = {"open_id": "o", "_synced_at": now, "_last_seen_at": now}
    first = ChunkBuffer(VIDEO_FIELDS, extra, sync.SUMMARY_COLUMNS, chunk_rows=10)
    first.extend(_records(30))
    first.finish()
    catalog.overwrite(uri, first.table(), key=["id"], commit_info={"lake.run_id": "first"})

    class Racing(ChunkBuffer):
        """While delta-rs consumes the first attempt, another writer commits (a real race)."""

        raced = False

        def batches(self, schema=None):
            if not Racing.raced:
                Racing.raced = True
                other = threading.Thread(target=lambda: DeltaCatalog(root_uri=str(tmp_path / "lake")).merge(
                    uri, first.table().slice(0, 3), key=["id"], commit_info={"lake.run_id": "other"},
                    update_only_if_changed=False))
                other.start()
                other.join()
            yield from super().batches(schema)

    listing = Racing(VIDEO_FIELDS, extra, sync.SUMMARY_COLUMNS, chunk_rows=10)
    listing.extend(_records(25, offset=1000))
    listing.finish()
    write = sync._overwrite(catalog, uri, listing, {"lake.run_id": "full"}, None)
    assert [h["run_id"] for h in catalog.history(uri)] == ["full", "other", "first"]
    assert write.rows_written == 25 and write.deleted == 30 and write.inserted == 25
    assert sorted(catalog.read(uri).column("id").to_pylist()) == sorted(r["id"] for r in _records(25, 1000))


@pytest.mark.parametrize("burst", [250, 600])
def test_rate_budget_is_a_sliding_window_cap_not_a_pace(burst):
    """600/min lets a burst of up to 600 go at once (250 refresh batches need no spacing); request 601 waits
    until the first one leaves the window."""
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    budget = RateBudget(600, 60.0, clock=lambda: now[0], sleep=sleep)
    assert [budget.acquire() for _ in range(burst)] == [0.0] * burst
    assert slept == []
    if burst == 600:
        now[0] += 5.0
        assert budget.acquire() == pytest.approx(55.0)
