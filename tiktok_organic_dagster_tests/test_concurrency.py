"""Two runs of the same source at once.

1. Through Dagster: the project's dagster.yaml run-tag limit (one run per ``tiktok_organic/source`` value)
   applied by the real QueuedRunCoordinator and its daemon's dequeue step — runs launched over GraphQL as
   the UI does, executed for real against the sandbox once dequeued.
2. With the limit bypassed: two processes (full + incremental) write the same tables at the same moment.
   Both reach the commit from the same table version, so one commit wins and the other hits a conflict,
   re-reads and retries; the final tables equal the source (no lost or duplicated rows). Both also refresh
   the same rotated token at once: the store's cross-process lock leaves exactly one refresh.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import instance_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster_graphql.client.query import LAUNCH_PIPELINE_EXECUTION_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql

from tiktok_organic_dagster.defs.definitions import build_definitions
from tiktok_organic_dagster.names import SOURCE_TAG
from tiktok_organic_dagster.settings import load_settings
from tiktok_organic_dagster_tests.fixtures_faults import (
    FULL,
    REPO_ROOT,
    SYNC,
    assert_mirrors_source,
    run,
    start_child,
    store_refresh_token,
    table_uri,
)
from tiktok_organic_dagster_tests.helpers import catalog_for, patched_env, sandbox_env

LOCATION = "tiktok_organic_dagster"


def _launch(ctx, job: str, tags: dict[str, str] | None = None) -> str:
    params = {"selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
                           "pipelineName": job}, "runConfigData": {}}
    if tags:
        params["executionMetadata"] = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
    data = execute_dagster_graphql(ctx, LAUNCH_PIPELINE_EXECUTION_MUTATION, {"executionParams": params}).data
    result = data["launchPipelineExecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    assert result["run"]["status"] == "QUEUED"  # the instance queues, the daemon decides
    return result["run"]["runId"]


def test_run_tag_limit_queues_second_run_of_same_source(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=60)
    env = sandbox_env(server, tmp_path)
    concurrency = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["concurrency"]
    (tmp_path / "defs.py").write_text(
        "from tiktok_organic_dagster.defs.definitions import build_definitions\n"
        "from tiktok_organic_dagster.settings import load_settings\n"
        "defs = build_definitions(load_settings())\n"
    )
    (tmp_path / "home").mkdir()
    overrides = {"concurrency": concurrency,
                 "run_launcher": {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}}
    with patched_env(env), instance_for_test(overrides=overrides, temp_dir=str(tmp_path / "home")) as instance:
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(executable_path=sys.executable, python_file=str(tmp_path / "defs.py"),
                                 attribute="defs", working_directory=str(tmp_path)),
            location_name=LOCATION,
        )
        defs = build_definitions(load_settings())
        with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as process_ctx:
            ctx = process_ctx.create_request_context()
            full_id = _launch(ctx, FULL)
            sync_id = _launch(ctx, SYNC)
            other_id = _launch(ctx, SYNC, {SOURCE_TAG: "another_account"})  # control: other tag value
            runs = {r: instance.get_run_by_id(r) for r in (full_id, sync_id)}
            assert {r.tags[SOURCE_TAG] for r in runs.values()} == {"tiktok_organic"}  # from the job defs

            daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)

            def statuses() -> list[dg.DagsterRunStatus]:
                list(daemon.run_iteration(process_ctx))  # one dequeue pass, as the daemon does every tick
                return [instance.get_run_by_id(r).status for r in (full_id, sync_id, other_id)]

            starting, queued = dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.QUEUED
            assert statuses() == [starting, queued, starting]  # same source waits; another account doesn't
            assert statuses() == [starting, queued, starting]  # still waiting while the first is in flight
            # (the control shares the account's API pool; end it so only the tag limit is in play below)
            instance.report_run_canceled(instance.get_run_by_id(other_id))

            finished = execute_run(InMemoryJob(defs.resolve_job_def(FULL)), instance.get_run_by_id(full_id),
                                   instance)
            assert finished.success
            assert statuses()[:2] == [dg.DagsterRunStatus.SUCCESS, starting]  # now the second one goes
            assert execute_run(InMemoryJob(defs.resolve_job_def(SYNC)), instance.get_run_by_id(sync_id),
                               instance).success
            launched = [r.run_id for r in instance.run_launcher.queue()]
            assert launched.index(full_id) < launched.index(sync_id)
    assert_mirrors_source(env, server)


# Both writers stop right before their first videos commit until the other arrives, so both read the table
# at the same version and the second committer must conflict: the catalog then re-reads and retries.
_BARRIER = """
import os, time
import deltalake
import tiktok_organic_dagster.lake.writes as dc
_barrier = os.environ["FAULT_BARRIER"]
_passed = []
def _wait(target):
    uri = str(getattr(target, "table_uri", target)).rstrip("/")
    if _passed or not uri.endswith("/videos"):
        return
    _passed.append(uri)
    open(os.path.join(_barrier, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(_barrier)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
_write = dc.write_deltalake
def _write_at_barrier(target, *args, **kwargs):
    _wait(target)
    return _write(target, *args, **kwargs)
dc.write_deltalake = _write_at_barrier
_merge = deltalake.DeltaTable.merge
def _merge_at_barrier(self, *args, **kwargs):
    _wait(self)
    return _merge(self, *args, **kwargs)
deltalake.DeltaTable.merge = _merge_at_barrier
"""


def test_two_writers_without_the_limit_stay_consistent(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=100)
    env = sandbox_env(server, tmp_path)
    assert run(FULL, env, server).success
    deleted = server.videos()[3]["id"]
    server.delete_video(deleted)  # only the full sync removes it ...
    server.add_videos(4)  # ... both see the new ones
    server.bump_counters(fraction=0.3)
    server.expire_access_tokens()  # both processes must refresh the (strictly rotating) token at once
    server.reset_counts()
    catalog = catalog_for(env)
    start_version = catalog.version(table_uri(env, "videos"))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    child_env = {**env, "FAULT_BARRIER": str(barrier)}
    procs = [start_child(FULL, child_env, server, hook=_BARRIER), start_child(SYNC, child_env, server, hook=_BARRIER)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]
    assert len(list(barrier.iterdir())) == 2  # both really reached the commit together
    # one lost the race on the videos table, re-read the new version and retried
    assert re.search(r"(overwrite|incremental) of \S+/videos: commit conflict \(attempt 1/", "\n".join(outputs))

    commits = [c for c in catalog.history(table_uri(env, "videos")) if c["version"] > start_version]
    sync_types = [c["sync_type"] for c in commits if c["sync_type"]]
    # the full commit always lands; the incremental one too unless, retried after it, it had nothing to change
    assert "full" in sync_types and set(sync_types) <= {"full", "incremental"}
    assert_mirrors_source(env, server)  # no lost rows, no duplicates, deleted video gone either way
    assert server.request_counts()["oauth_token"] == 1  # one refresh; the other process reused its result
    assert store_refresh_token(env) == server.current_refresh_token()
    assert Path(env["TIKTOK_TOKEN_STORE"]).stat().st_mode & 0o777 == 0o600
