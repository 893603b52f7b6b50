"""Both jobs through Dagster against the sandbox over HTTP, compared with its ground truth field by field."""

from datetime import datetime, timezone

import dagster as dg

from tiktok_organic_dagster.defs.definitions import build_definitions
from tiktok_organic_dagster.names import FULL_SYNC_JOB, SYNC_JOB, SYNC_OP
from tiktok_organic_dagster.settings import load_settings
from tiktok_organic_dagster.tiktok.streams import USER_FIELDS, VIDEO_FIELDS
from tiktok_organic_dagster_tests.helpers import (
    catalog_for,
    expected_video,
    patched_env,
    read_rows,
    run_job,
    sandbox_env,
)


def _by_id(rows):
    return {r["id"]: r for r in rows}


def _assert_videos_match(rows, truth_videos):
    table = _by_id(rows)
    for video in truth_videos:
        row = table[video["id"]]
        for field, value in expected_video(video).items():
            assert row[field] == value, (video["id"], field, row[field], value)


def test_full_incremental_full_cycle(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=150)
    env = sandbox_env(server, tmp_path)
    instance = dg.DagsterInstance.ephemeral()

    # 1. full sync: tables mirror the sandbox
    result = run_job(FULL_SYNC_JOB, env, instance)
    assert result.success
    truth = server.videos()
    rows = read_rows(env, "videos")
    assert sorted(r["id"] for r in rows) == sorted(v["id"] for v in truth)
    _assert_videos_match(rows, truth)
    user = server.user()
    [user_row] = read_rows(env, "user_info")
    for field in USER_FIELDS:
        assert user_row[field] == user[field], field
    assert all(r["open_id"] == user["open_id"] for r in rows)
    assert all(isinstance(r["id"], str) and len(r["id"]) == 19 for r in rows)

    # 2. new videos, moved counters (recent and old), a deleted video -> incremental
    newest = truth[0]
    oldest = truth[-1]
    deleted = truth[1]
    server.add_videos(5)
    server.bump_counters([newest["id"], oldest["id"]])
    server.delete_video(deleted["id"])
    result = run_job(SYNC_JOB, env, instance)
    assert result.success
    mats = result.asset_materializations_for_node(SYNC_OP)
    videos_meta = next(m.metadata for m in mats if m.asset_key.path[-1] == "videos")
    assert videos_meta["sync_type"].value == "INCREMENTAL"
    truth2 = {v["id"]: v for v in server.videos()}
    table = _by_id(read_rows(env, "videos"))
    assert set(truth2) - set(table) == set()  # every new video landed
    assert deleted["id"] in table  # incremental keeps what it did not re-read
    assert table[newest["id"]]["view_count"] == truth2[newest["id"]]["view_count"]  # recent change merged
    assert table[oldest["id"]]["view_count"] == oldest["view_count"]  # outside the look-back: untouched
    assert len(table) == len(truth2) + 1
    assert videos_meta["rows_inserted"].value == 5

    # 3. full sync: the deleted video leaves, everything equals the source again
    result = run_job(FULL_SYNC_JOB, env, instance)
    assert result.success
    rows = read_rows(env, "videos")
    assert deleted["id"] not in _by_id(rows)
    _assert_videos_match(rows, server.videos())
    assert len(rows) == len(server.videos())

    # history: one row per key per day, holding today's counters
    today = datetime.now(timezone.utc).date()
    hist = read_rows(env, "videos_history")
    keys = [(r["id"], r["snapshot_date"]) for r in hist]
    assert len(keys) == len(set(keys))
    assert {r["snapshot_date"] for r in hist} == {today}
    hist_by_id = {r["id"]: r for r in hist}
    for v in server.videos():
        assert hist_by_id[v["id"]]["view_count"] == v["view_count"]
    user_hist = read_rows(env, "user_info_history")
    assert len(user_hist) == 1 and user_hist[0]["follower_count"] == server.user()["follower_count"]


def test_incremental_request_count_follows_lookback(sandbox_factory, tmp_path):
    """Token + user + pages up to the first page wholly older than the look-back window."""
    server = sandbox_factory(video_count=400)
    env = sandbox_env(server, tmp_path)
    assert run_job(FULL_SYNC_JOB, env).success
    server.add_videos(20)
    server.reset_counts()
    assert run_job(SYNC_JOB, env).success
    videos = server.videos()
    newest_known = videos[20]["create_time"]  # the table's newest before this sync
    cutoff = newest_known - 7 * 86400
    # pages of 20, newest first: stop after the first page whose every video is older than the cutoff
    pages = 0
    for start in range(0, len(videos), 20):
        pages += 1
        if all(v["create_time"] < cutoff for v in videos[start:start + 20]):
            break
    counts = server.request_counts()
    assert counts["video_list"] == pages
    assert counts["user_info"] == 1
    assert counts.get("video_query", 0) == 0


def test_full_refresh_run_config_forces_full(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=60)
    env = sandbox_env(server, tmp_path)
    assert run_job(SYNC_JOB, env).success
    deleted = server.videos()[0]["id"]
    server.delete_video(deleted)
    config = {"ops": {SYNC_OP: {"config": {"full_refresh": True}}}}
    result = run_job(SYNC_JOB, env, run_config=config)
    assert result.success
    assert deleted not in {r["id"] for r in read_rows(env, "videos")}
    assert set(VIDEO_FIELDS) <= set(read_rows(env, "videos")[0])
    mats = result.asset_materializations_for_node(SYNC_OP)
    meta = next(m.metadata for m in mats if m.asset_key.path[-1] == "videos")
    assert meta["sync_type"].value == "FULL_TABLE" and meta["rows_deleted"].value == 1


def test_refresh_all_counters_updates_old_videos_through_video_query(sandbox_factory, tmp_path):
    """INCREMENTAL + refresh_all_counters: counters of videos outside the look-back window come from
    video/query (20 ids a request); a video the API no longer returns is reported and left as it was."""
    server = sandbox_factory(video_count=100)
    env = sandbox_env(server, tmp_path)
    assert run_job(FULL_SYNC_JOB, env).success
    before = _by_id(read_rows(env, "videos"))
    truth = server.videos()
    old, gone = truth[-1]["id"], truth[-2]["id"]  # both far outside the 7-day window
    server.bump_counters([old])
    server.bump_counters(fraction=0.3)  # old and recent videos move
    server.delete_video(gone)
    server.reset_counts()
    config = {"ops": {SYNC_OP: {"config": {"refresh_all_counters": True}}}}
    result = run_job(SYNC_JOB, env, run_config=config)
    assert result.success
    mats = result.asset_materializations_for_node(SYNC_OP)
    meta = {k: v.value for k, v in next(m.metadata for m in mats if m.asset_key.path[-1] == "videos").items()}
    assert meta["sync_type"] == "INCREMENTAL"
    queried = meta["counter_refresh_ids"]
    assert queried > 20  # several video/query batches
    assert server.request_counts()["video_query"] == meta["counter_refresh_requests"] == -(-queried // 20)
    assert meta["videos_not_returned"] == 1 and meta["videos_not_returned_sample"] == gone
    table = _by_id(read_rows(env, "videos"))
    now_truth = {v["id"]: v for v in server.videos()}
    assert table[old]["view_count"] == now_truth[old]["view_count"] != before[old]["view_count"]
    assert table[gone] == before[gone]  # kept untouched (incremental never deletes), old _last_seen_at
    _assert_videos_match(list(table.values()), now_truth.values())  # every counter equals the source
    hist = {r["id"]: r for r in read_rows(env, "videos_history")}
    assert hist[old]["view_count"] == now_truth[old]["view_count"]


def test_extra_fields_are_requested_and_land_as_columns(sandbox_factory, tmp_path):
    """`is_aigc` is new in TikTok's 2026 docs: opt in with a setting and it becomes a typed column."""
    server = sandbox_factory(video_count=40)
    env = sandbox_env(server, tmp_path, TIKTOK_VIDEOS_EXTRA_FIELDS="is_aigc")
    assert run_job(SYNC_JOB, env).success
    rows = {r["id"]: r for r in read_rows(env, "videos")}
    truth = server.videos()
    assert all(rows[v["id"]]["is_aigc"] == v["is_aigc"] for v in truth)


def test_a_selected_subset_writes_only_its_tables(sandbox_factory, tmp_path):
    """One step holds every stream, so a subset must not write (or report) what was not selected: a stream
    runs when either of its tables is selected, and only the selected tables are committed."""
    server = sandbox_factory(video_count=45)
    env = sandbox_env(server, tmp_path)
    catalog = catalog_for(env)

    def uri(table: str) -> str:
        return catalog.table_uri("raw", "tiktok_organic", table)

    def materialize(*tables: str) -> dict[str, dict]:
        server.reset_counts()
        with patched_env(env):
            job = build_definitions(load_settings()).resolve_job_def(SYNC_JOB)
            result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(),
                                            asset_selection=[dg.AssetKey(["raw", "tiktok_organic", t])
                                                             for t in tables])
        assert result.success
        return {m.asset_key.path[-1]: {k: v.value for k, v in m.metadata.items()}
                for m in result.asset_materializations_for_node(SYNC_OP)}

    assert set(materialize("videos")) == {"videos"}
    assert catalog.exists(uri("videos")) and catalog.row_count(uri("videos")) == 45
    assert not any(catalog.exists(uri(t)) for t in ("videos_history", "user_info", "user_info_history"))
    assert server.request_counts()["user_info"] == 0  # the unselected stream made no request

    version = catalog.history(uri("videos"), limit=1)[0]["version"]
    assert set(materialize("user_info_history")) == {"user_info_history"}
    assert catalog.row_count(uri("user_info_history")) == 1 and not catalog.exists(uri("user_info"))
    assert server.request_counts()["video_list"] == 0
    assert catalog.history(uri("videos"), limit=1)[0]["version"] == version

    mats = materialize("videos_history", "user_info")
    assert set(mats) == {"videos_history", "user_info"}
    # the table exists, so this is an incremental run: the history gets the look-back window's videos
    assert 0 < catalog.row_count(uri("videos_history")) == mats["videos_history"]["snapshot_rows_written"] <= 45
    assert mats["videos_history"]["api_requests"] == server.request_counts()["video_list"] > 0
    assert catalog.history(uri("videos"), limit=1)[0]["version"] == version  # listed, not rewritten
