"""Full syncs over time slices in parallel: exact against the sandbox's ground truth whatever the paging
throws at them, a sequential fallback when the API ignores custom cursors, slices from the stored table."""

from __future__ import annotations

import logging

from tiktok_organic_dagster.names import FULL_SYNC_JOB, SYNC_OP
from tiktok_organic_dagster.sandbox import Faults
from tiktok_organic_dagster.tiktok import TikTokClient
from tiktok_organic_dagster.tiktok.slicing import SlicingRejected, page_sliced
from tiktok_organic_dagster_tests.fixtures_faults import FULL, assert_mirrors_source, run
from tiktok_organic_dagster_tests.helpers import read_rows, run_job, sandbox_env


def _videos_meta(result) -> dict:
    mats = result.asset_materializations_for_node(SYNC_OP)
    return {k: getattr(v, "value", v) for k, v in next(m for m in mats if m.asset_key.path[-1] == "videos")
            .metadata.items()}


def test_sliced_full_sync_is_exact_with_same_second_videos_short_pages_and_429s(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=1500, same_second_every=2)
    server.set_faults(Faults(short_pages=True, status_429_every=13))
    env = sandbox_env(server, tmp_path)
    truth = server.videos()
    seconds = [v["create_time"] for v in truth]
    assert len(seconds) - len(set(seconds)) >= 500  # many videos really share their second with another
    for _ in range(2):  # the first splits as it goes; the second cuts at stored seconds, most of them shared
        result = run(FULL, env, server)
        assert result.success
        meta = _videos_meta(result)
        assert meta["paging"] == "sliced" and meta["paging_slices"] > 2
        assert meta["api_429s"] > 0
        assert_mirrors_source(env, server)


def test_sliced_listing_stays_exact_when_videos_are_published_and_deleted_while_paging(sandbox_factory,
                                                                                      tmp_path):
    server = sandbox_factory(video_count=800, same_second_every=5)
    before = {v["id"] for v in server.videos()}
    server.set_faults(Faults(publish_during_paging_after=3, delete_during_paging_after=6))
    env = sandbox_env(server, tmp_path)
    result = run(FULL, env, server)
    assert result.success and _videos_meta(result)["paging"] == "sliced"
    after = {v["id"] for v in server.videos()}
    deleted = set(server.api.deleted_during_paging)
    published = after - before
    assert len(deleted) == 1 and len(published) == 1
    ids = [r["id"] for r in read_rows(env, "videos")]
    assert len(ids) == len(set(ids))  # none twice
    # every video that existed all along is there; the two that changed mid-listing may or may not be
    assert before - deleted <= set(ids) <= before | published


def test_custom_cursors_ignored_falls_back_to_one_cursor_walk(sandbox_factory, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    server = sandbox_factory(video_count=600)
    server.set_faults(Faults(ignore_custom_cursor=True))
    env = sandbox_env(server, tmp_path)
    result = run(FULL, env, server)
    assert result.success
    meta = _videos_meta(result)
    assert meta["paging"] == "sequential"
    assert "custom cursors are not honoured" in meta["paging_fallback_reason"]
    assert any("listing again with one cursor walk" in r.getMessage() for r in caplog.records)
    assert_mirrors_source(env, server)


def test_the_next_full_sync_slices_by_the_stored_creation_times(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=2000)
    env = sandbox_env(server, tmp_path)
    assert run(FULL, env, server).success
    server.add_videos(25)  # new videos land in the top slice, above the stored distribution
    server.reset_counts()
    result = run(FULL, env, server)
    meta = _videos_meta(result)
    assert meta["paging"] == "sliced" and meta["paging_slices"] >= TikTokClient.paging_parallelism
    pages = -(-2025 // 20)
    # each slice ends on a page that crosses its lower bound: at most one extra request per slice
    assert server.request_counts()["video_list"] <= pages + meta["paging_slices"]
    assert_mirrors_source(env, server)


def test_a_first_full_sync_splits_as_it_goes_with_little_overhead(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=3000)
    env = sandbox_env(server, tmp_path)
    result = run(FULL, env, server)
    meta = _videos_meta(result)
    assert meta["paging"] == "sliced" and meta["paging_slices"] >= TikTokClient.paging_parallelism
    assert server.request_counts()["video_list"] <= 150 * 1.15 + meta["paging_slices"]
    assert_mirrors_source(env, server)


class _Sink(list):
    def extend(self, records) -> None:  # type: ignore[override]
        super().extend(records)


def test_evidence_rules_reject_pages_that_break_them():
    """A page out of order, or a video newer than the cursor it answers, rejects the sliced listing."""
    def unordered(body):
        return {"videos": [{"id": "1", "create_time": 100}, {"id": "2", "create_time": 200}],
                "has_more": False, "cursor": 0}

    def ignores_cursor(body):
        return {"videos": [{"id": "9", "create_time": 2_000_000_000}], "has_more": False, "cursor": 0}

    for fetch, reason in ((unordered, "not newest first"), (ignores_cursor, "not honoured")):
        try:
            page_sliced(fetch, _Sink, workers=2, boundaries=[1_700_000_000_000])
        except SlicingRejected as exc:
            assert reason in str(exc)
        else:
            raise AssertionError(f"{fetch.__name__} was accepted")


def test_the_setting_turns_slicing_off(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=200)
    env = sandbox_env(server, tmp_path, TIKTOK_VIDEOS_PAGING_PARALLELISM="1")
    result = run_job(FULL_SYNC_JOB, env)
    assert result.success and _videos_meta(result)["paging"] == "sequential"
    assert server.request_counts()["video_list"] == 10  # one cursor walk: exactly one request per page
    assert_mirrors_source(env, server)
