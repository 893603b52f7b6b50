"""Faults the sync must heal: the real Dagster jobs against the sandbox over HTTP with fault switches on.

Each case asserts the run succeeded AND the Delta tables equal the sandbox's ground truth, and that the
fault really happened (the client's retry/refresh counters in the materialization metadata or the sandbox's
own request accounting), so a fault switch that silently did nothing cannot make a case pass.
"""

from __future__ import annotations

import time

import pytest

from tiktok_organic_dagster.names import SYNC_OP
from tiktok_organic_dagster.sandbox import EXTRA_FIELD_NAME, MISSING_FIELD_CYCLE, Faults
from tiktok_organic_dagster.tiktok import TikTokClient
from tiktok_organic_dagster_tests.fixtures_faults import (
    FULL,
    SYNC,
    assert_mirrors_source,
    expire_stored_access_token,
    read_rows,
    run,
    store_refresh_token,
)
from tiktok_organic_dagster_tests.helpers import sandbox_env


def _meta_sum(result, key: str) -> int:
    """Sum of a numeric metadata entry over the two main assets (videos, user_info)."""
    total = 0
    for mat in result.asset_materializations_for_node(SYNC_OP):
        if mat.asset_key.path[-1] in ("videos", "user_info") and key in mat.metadata:
            total += mat.metadata[key].value
    return total


def _videos_meta(result) -> dict:
    mats = result.asset_materializations_for_node(SYNC_OP)
    return {k: v.value for k, v in next(m for m in mats if m.asset_key.path[-1] == "videos").metadata.items()}


@pytest.mark.parametrize(
    ("faults", "every", "status"),
    [
        (Faults(status_429_every=5), 5, 429),
        (Faults(status_500_every=7), 7, 500),
        (Faults(error_envelope_200_every=4), 4, None),
        (Faults(undecodable_every=4), 4, None),
    ],
    ids=["429-every-5th", "500-every-7th", "error-envelope-under-200", "undecodable-body"],
)
def test_transient_faults_heal(sandbox_factory, tmp_path, faults, every, status):
    server = sandbox_factory(video_count=300)  # 15 pages: enough requests for every-7th to hit twice
    env = sandbox_env(server, tmp_path)
    server.set_faults(faults)
    result = run(FULL, env, server)
    assert result.success
    assert_mirrors_source(env, server)
    total = sum(server.request_counts().values())
    injected = total // every
    assert injected >= 2
    assert _meta_sum(result, "api_retries") == injected  # each injected fault cost exactly one retry
    if status is not None:
        assert server.status_counts()[status] == injected


def test_429_with_retry_after_is_honoured(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=300)
    env = sandbox_env(server, tmp_path)
    server.set_faults(Faults(status_429_every=5, retry_after_seconds=0.25))
    started = time.monotonic()
    # one cursor walk, so the waits add up (time slices in parallel would overlap them)
    result = run(FULL, env, server, backoff_base_seconds=0.0, backoff_max_seconds=0.0, paging_parallelism=1)
    elapsed = time.monotonic() - started
    assert result.success
    assert_mirrors_source(env, server)
    n429 = server.status_counts()[429]
    assert n429 >= 2 and _meta_sum(result, "api_429s") == n429
    assert elapsed >= 0.25 * n429  # the client waited what the server asked (backoff itself is 0 here)


def test_stalled_request_times_out_and_is_retried(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=120)
    env = sandbox_env(server, tmp_path)
    server.set_faults(Faults(stall_every=4, stall_seconds=1.2))
    started = time.monotonic()
    result = run(FULL, env, server, request_timeout_seconds=0.3)
    assert result.success
    assert_mirrors_source(env, server)
    assert _meta_sum(result, "api_retries") >= 2
    assert time.monotonic() - started < 8  # the client gave up on stalls after 0.3 s, it did not wait them out


def test_access_token_invalidated_mid_pagination(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=120)
    env = sandbox_env(server, tmp_path)
    server.set_faults(Faults(invalidate_access_after=3))
    result = run(FULL, env, server)
    assert result.success
    assert_mirrors_source(env, server)
    counts = server.request_counts()
    refreshes = _meta_sum(result, "token_refreshes")
    assert refreshes >= 3  # the first token plus at least two mid-pagination refreshes
    assert counts["oauth_token"] == refreshes
    # One refresh per invalidated token, whichever request saw it first. user_info and the video time slices
    # page side by side, so a token can be rejected once per request in flight: at most one 401 per thread
    # (the slices' threads plus user_info's) per invalidated token.
    in_flight = TikTokClient.paging_parallelism + 1
    assert refreshes - 1 <= server.status_counts()[401] <= in_flight * (refreshes - 1)
    assert store_refresh_token(env) == server.current_refresh_token()


def test_strict_rotation_over_ten_runs(sandbox_factory, tmp_path):
    """Each run refreshes (access tokens expire between runs, as daily runs with 24 h tokens do) and must
    use exactly the refresh token the previous run stored; the stale TIKTOK_REFRESH_TOKEN stays set.
    429s and 500s also hit some token requests: the retry re-sends the same refresh token (an injected
    error never rotated it), so rotation survives transient faults too."""
    server = sandbox_factory(video_count=60, strict_rotation=True)
    env = sandbox_env(server, tmp_path)
    server.set_faults(Faults(status_429_every=4, status_500_every=7))
    seen: list[str] = []
    token_retries = 0
    for i in range(10):
        before = server.current_refresh_token()
        if i:
            assert store_refresh_token(env) == before  # what the previous run stored is what TikTok expects
            server.expire_access_tokens()
            # a day passed on the client too: it refreshes before any data request, so every run makes the
            # same requests in the same order and the faults below hit the same ones each time
            expire_stored_access_token(env)
        server.reset_counts()
        issued = len(server.issued_tokens())
        result = run(SYNC if i else FULL, env, server)
        assert result.success, i
        assert len(server.issued_tokens()) == issued + 2, i  # exactly one rotation: 1 access + 1 refresh
        token_retries += server.request_counts()["oauth_token"] - 1
        current = server.current_refresh_token()
        assert current != before and current not in seen
        assert store_refresh_token(env) == current
        seen.append(current)
    assert token_retries >= 1  # some refreshes were hit by a fault and retried
    assert env["TIKTOK_REFRESH_TOKEN"] == server.initial_refresh_token  # env untouched, store lineage won
    assert_mirrors_source(env, server)


def test_short_and_empty_pages_that_say_has_more(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=120)
    env = sandbox_env(server, tmp_path)
    server.set_faults(Faults(short_pages=True))
    result = run(FULL, env, server)
    assert result.success
    assert_mirrors_source(env, server)
    assert _videos_meta(result)["api_pages"] > 120 // 20 + 2  # really got short pages
    server.add_videos(4)
    result = run(SYNC, env, server)
    assert result.success
    assert _videos_meta(result)["sync_type"] == "INCREMENTAL"
    assert_mirrors_source(env, server)


def test_video_published_while_full_sync_is_paging(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=120)
    env = sandbox_env(server, tmp_path)
    before = {v["id"] for v in server.videos()}
    server.set_faults(Faults(publish_during_paging_after=2))
    result = run(FULL, env, server)
    assert result.success
    [new_id] = {v["id"] for v in server.videos()} - before  # published after page 2 was served
    rows = read_rows(env, "videos")
    assert {r["id"] for r in rows} == before and len(rows) == len(before)  # consistent listing, no dupes
    result = run(SYNC, env, server)
    assert result.success
    assert new_id in {r["id"] for r in read_rows(env, "videos")}
    assert_mirrors_source(env, server)  # includes: no duplicate ids, history one row per id
    assert _videos_meta(result)["rows_inserted"] == 1


def test_unknown_new_field_becomes_a_column(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=80)
    env = sandbox_env(server, tmp_path)
    assert run(FULL, env, server).success
    assert EXTRA_FIELD_NAME not in read_rows(env, "videos")[0]
    server.config.extra_fields = True  # TikTok starts sending an undocumented field
    result = run(SYNC, env, server)
    assert result.success
    rows = read_rows(env, "videos")
    values = {r[EXTRA_FIELD_NAME] for r in rows}
    assert values == {True, None}  # merged rows carry it, rows outside the look-back are null
    assert EXTRA_FIELD_NAME in {c.name for c in _videos_meta(result)["dagster/column_schema"].columns}
    assert run(FULL, env, server).success
    assert_mirrors_source(env, server, extra_columns=[EXTRA_FIELD_NAME])


def test_documented_field_missing_from_some_videos(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=80, missing_field_every=5)
    env = sandbox_env(server, tmp_path)
    result = run(FULL, env, server)
    assert result.success
    assert_mirrors_source(env, server)  # missing keys compare as None
    rows = {r["id"]: r for r in read_rows(env, "videos")}
    truth = server.videos()
    missing = [(v["id"], f) for v in truth for f in MISSING_FIELD_CYCLE if f not in v]
    assert len(missing) == 80 // 5
    assert all(rows[vid][field] is None for vid, field in missing)
    server.add_videos(5)  # the incremental merge handles them too
    assert run(SYNC, env, server).success
    assert_mirrors_source(env, server)
