"""Catch-up sensor against real Delta history, multi-account runs, and a missing credential at run time."""

import json
import os
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from tiktok_organic_dagster.defs.definitions import build_definitions
from tiktok_organic_dagster.defs.sensors import decide
from tiktok_organic_dagster.names import CATALOG_RESOURCE, CATCHUP_SENSOR, FULL_SYNC_JOB, SYNC_JOB
from tiktok_organic_dagster.settings import load_settings
from tiktok_organic_dagster_tests.helpers import patched_env, read_rows, run_job, sandbox_env

NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
WEEK = timedelta(days=7)
GRACE = timedelta(hours=6)


def test_decide_requests_once_per_stale_state():
    stale = NOW - WEEK - GRACE - timedelta(minutes=1)
    request, cursor, _ = decide(stale, NOW, WEEK, GRACE, None)
    assert request
    # the same stale state an hour later: no second request
    again, cursor2, reason = decide(stale, NOW + timedelta(hours=1), WEEK, GRACE, cursor)
    assert not again and "already requested" in reason
    # the requested run failed and a whole period went by: ask once more
    assert decide(stale, NOW + WEEK + timedelta(hours=1), WEEK, GRACE, cursor2)[0]
    # a fresh full sync: nothing to do; a never-synced source: request
    assert not decide(NOW - timedelta(days=1), NOW, WEEK, GRACE, cursor)[0]
    assert decide(None, NOW, WEEK, GRACE, None)[0]
    assert json.loads(decide(None, NOW, WEEK, GRACE, None)[1])["for"] == "never"


def _evaluate(env, cursor=None):
    with patched_env(env):
        defs = build_definitions(load_settings())
        sensor = defs.resolve_sensor_def(CATCHUP_SENSOR)
        resources = {CATALOG_RESOURCE: defs.resources[CATALOG_RESOURCE]}
        with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
            return sensor.evaluate_tick(context)


def test_sensor_reads_full_sync_time_from_delta_history(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=30)
    env = sandbox_env(server, tmp_path)
    first = _evaluate(env)  # no tables yet: a full sync is due
    assert len(first.run_requests) == 1
    assert first.run_requests[0].job_name in (None, FULL_SYNC_JOB)
    assert not _evaluate(env, first.cursor).run_requests  # no double request for the same state
    assert run_job(FULL_SYNC_JOB, env).success
    after = _evaluate(env, first.cursor)
    assert not after.run_requests and "recent" in (after.skip_message or "")


def test_incremental_runs_do_not_count_as_full(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=30)
    env = sandbox_env(server, tmp_path)
    assert run_job(SYNC_JOB, env).success  # first sync of empty tables is full
    server.add_videos(2)  # (a merge that changes nothing makes no commit)
    assert run_job(SYNC_JOB, env).success  # this one is incremental for videos
    from tiktok_organic_dagster_tests.helpers import catalog_for

    catalog = catalog_for(env)
    uri = catalog.table_uri("raw", "tiktok_organic", "videos")
    kinds = [h["sync_type"] for h in catalog.history(uri) if h.get("sync_type")]
    assert kinds[0] == "incremental" and "full" in kinds
    last_full = catalog.last_commit_time(uri, sync_type="full")
    last_any = catalog.last_commit_time(uri)
    assert last_full is not None and last_any is not None and last_full <= last_any


def test_two_accounts_sync_into_their_own_tables(sandbox_factory, tmp_path):
    a = sandbox_factory(video_count=25, seed=1)
    b = sandbox_factory(video_count=40, seed=2)
    config = tmp_path / "sources.yaml"
    config.write_text(
        "sources:\n"
        "  - name: brand_a\n    table_prefix: a_\n"
        "    credentials: {client_id_env: A_ID, client_secret_env: A_SECRET, refresh_token_env: A_REFRESH}\n"
        "  - name: brand_b\n    table_prefix: b_\n"
        "    credentials: {client_id_env: B_ID, client_secret_env: B_SECRET, refresh_token_env: B_REFRESH}\n"
    )
    env = {
        "TIKTOK_ORGANIC_CONFIG": str(config),
        "TIKTOK_DELTA_ROOT": str(tmp_path / "lake"),
        "TIKTOK_TOKEN_STORE": str(tmp_path / "tokens.json"),
        "A_ID": a.client_id, "A_SECRET": a.client_secret, "A_REFRESH": a.initial_refresh_token,
        "B_ID": b.client_id, "B_SECRET": b.client_secret, "B_REFRESH": b.initial_refresh_token,
    }
    # both sandboxes answer on different ports; each source reaches its own through the base URL
    for name, server in (("brand_a", a), ("brand_b", b)):
        assert run_job(f"{name}_sync", {**env, "TIKTOK_API_BASE_URL": server.base_url}).success
    rows_a = read_rows(env, "a_videos")
    rows_b = read_rows(env, "b_videos")
    assert {r["id"] for r in rows_a} == {v["id"] for v in a.videos()}
    assert {r["id"] for r in rows_b} == {v["id"] for v in b.videos()}
    assert read_rows(env, "a_user_info")[0]["open_id"] == a.user()["open_id"]
    assert read_rows(env, "b_user_info")[0]["open_id"] == b.user()["open_id"]
    store = json.loads((tmp_path / "tokens.json").read_text())
    assert set(store["entries"]) == {"brand_a", "brand_b"}
    assert store["entries"]["brand_a"]["refresh_token"] == a.current_refresh_token()
    assert store["entries"]["brand_b"]["refresh_token"] == b.current_refresh_token()


def test_missing_credential_at_run_time_names_the_variable(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=10)
    env = sandbox_env(server, tmp_path)
    env["TIKTOK_CLIENT_SECRET"] = ""
    with patched_env(env):
        del os.environ["TIKTOK_CLIENT_SECRET"]
        defs = build_definitions(load_settings())  # loading works: secrets are read at run time
        with pytest.raises(dg.DagsterResourceFunctionError) as err:  # the run's pre-flight, before any request
            defs.resolve_job_def(SYNC_JOB).execute_in_process(instance=dg.DagsterInstance.ephemeral())
    cause = err.value.__cause__
    assert isinstance(cause, dg.Failure) and "TIKTOK_CLIENT_SECRET not set where this run executes" in str(cause)
    assert "TIKTOK_CLIENT_ID" not in str(cause)
    assert sum(server.request_counts().values()) == 0
