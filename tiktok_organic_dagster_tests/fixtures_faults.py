"""Helpers shared by the fault, concurrency and security suites (plain functions: import them directly).

Every fault case compares the Delta tables with the sandbox's ground truth, or, for faults that must stop,
with a snapshot taken before the run (Delta version and content of every table).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg

from tiktok_organic_dagster.names import CLIENT_RESOURCE, FULL_SYNC_JOB, SYNC_JOB, SYNC_OP
from tiktok_organic_dagster.sandbox import SandboxServer
from tiktok_organic_dagster.tiktok.streams import USER_FIELDS
from tiktok_organic_dagster_tests.helpers import catalog_for, expected_video, read_rows, run_job

SYNC = SYNC_JOB
FULL = FULL_SYNC_JOB
TABLES = ("videos", "videos_history", "user_info", "user_info_history")
TABLE_KEYS = {"videos": ("id",), "videos_history": ("id", "snapshot_date"), "user_info": ("open_id",),
              "user_info_history": ("open_id", "snapshot_date")}
REPO_ROOT = Path(__file__).resolve().parents[1]


def client_config(server: SandboxServer, **knobs: Any) -> dict[str, Any]:
    """Run config overriding the TikTok client resource: short timeouts and tiny backoffs for tests.

    Dagster replaces a resource's whole config when run config names it, so the secrets are restated as
    ``{"env": ...}`` references (what an operator would type in the launchpad): no secret value ever sits
    in run config.
    """
    config: dict[str, Any] = {
        "client_id": {"env": "TIKTOK_CLIENT_ID"},
        "client_secret": {"env": "TIKTOK_CLIENT_SECRET"},
        "refresh_token": {"env": "TIKTOK_REFRESH_TOKEN"},
        "api_base_url": server.base_url,
        "request_timeout_seconds": 2.0,
        "max_retries": 5,
        "backoff_base_seconds": 0.005,
        "backoff_max_seconds": 0.05,
        **knobs,
    }
    return {"resources": {CLIENT_RESOURCE: {"config": config}}}


def run(job: str, env: dict[str, str], server: SandboxServer, instance: dg.DagsterInstance | None = None,
        raise_on_error: bool = False, **knobs: Any) -> dg.ExecuteInProcessResult:
    """Run a job through Dagster with the fast client config (full sync = sync + full_refresh op config)."""
    config = client_config(server, **knobs)
    if job == FULL:  # the full-sync job's default op config is replaced by run config: restate it
        config["ops"] = {SYNC_OP: {"config": {"full_refresh": True}}}
        job = SYNC
    return run_job(job, env, instance, run_config=config, raise_on_error=raise_on_error)


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """All step-failure messages of a run, causes included (what the UI shows for the failed steps)."""
    parts: list[str] = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                parts.append(error.message)
                error = error.cause
    return "\n".join(parts)


def failed_steps(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.step_key for e in result.all_events if e.is_step_failure}


def table_uri(env: dict[str, str], table: str) -> str:
    catalog = catalog_for(env)
    return catalog.table_uri("raw", "tiktok_organic", table)


def _sorted_rows(env: dict[str, str], table: str) -> list[dict]:
    keys = TABLE_KEYS[table]
    return sorted(read_rows(env, table), key=lambda r: tuple(str(r[k]) for k in keys))


def snapshot(env: dict[str, str], tables: Iterable[str] = TABLES) -> dict[str, tuple[int | None, list[dict]]]:
    """(Delta version, rows sorted by key) of every table; tables that do not exist are (None, [])."""
    catalog = catalog_for(env)
    out: dict[str, tuple[int | None, list[dict]]] = {}
    for table in tables:
        uri = table_uri(env, table)
        version = catalog.version(uri)
        out[table] = (version, _sorted_rows(env, table) if version is not None else [])
    return out


def assert_mirrors_source(env: dict[str, str], server: SandboxServer, extra_columns: Iterable[str] = ()) -> None:
    """videos == the sandbox's public videos (ids and every field), user_info == its user, histories hold
    exactly one row per key for today with today's counters."""
    truth = server.videos()
    rows = read_rows(env, "videos")
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate video ids in the table"
    assert set(ids) == {v["id"] for v in truth}
    by_id = {r["id"]: r for r in rows}
    for video in truth:
        row = by_id[video["id"]]
        expected = expected_video(video)
        expected.update({c: video.get(c) for c in extra_columns})
        for field, value in expected.items():
            assert row[field] == value, (video["id"], field, row[field], value)
    user = server.user()
    [user_row] = read_rows(env, "user_info")
    assert {f: user_row[f] for f in USER_FIELDS} == {f: user[f] for f in USER_FIELDS}
    history = read_rows(env, "videos_history")
    keys = [(r["id"], r["snapshot_date"]) for r in history]
    assert len(keys) == len(set(keys)), "duplicate (id, snapshot_date) in videos_history"
    today = datetime.now(timezone.utc).date()
    todays = {r["id"]: r["view_count"] for r in history if r["snapshot_date"] == today}
    # every public video has today's counters; a video deleted today keeps the row read before (history)
    assert {v["id"]: todays.get(v["id"]) for v in truth} == {v["id"]: v["view_count"] for v in truth}


def store_refresh_token(env: dict[str, str], key: str = "tiktok_organic") -> str:
    """The refresh token the token store holds for ``key`` (read the file directly: no client involved)."""
    import json

    doc = json.loads(Path(env["TIKTOK_TOKEN_STORE"]).read_text())
    return doc["entries"][key]["refresh_token"]


def expire_stored_access_token(env: dict[str, str]) -> None:
    """What a day does to the token store: the next run refreshes before its first data request."""
    from tiktok_organic_dagster_tests.helpers import expire_access_tokens

    expire_access_tokens(env["TIKTOK_TOKEN_STORE"])


# ------------------------------------------------------------------------------------ child processes
# A job run in a child process, for faults that need a real process boundary (SIGKILL, rlimits, two
# writers). The child gets the env and an optional hook snippet executed before the run.
_CHILD = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {root!r})
    from tiktok_organic_dagster_tests.fixtures_faults import client_config_for_child
    from tiktok_organic_dagster_tests.helpers import run_job
    {hook}
    args = json.loads(os.environ["FAULT_CHILD_ARGS"])
    result = run_job(args["job"], dict(os.environ), run_config=client_config_for_child(args),
                     raise_on_error=False)
    print("CHILD_RESULT", "success" if result.success else "failure", flush=True)
    sys.exit(0 if result.success else 3)
    """
)


def client_config_for_child(args: dict[str, Any]) -> dict[str, Any]:
    class _Server:  # only base_url is needed to build the config
        base_url = args["base_url"]

    config = client_config(_Server(), **args.get("knobs", {}))  # type: ignore[arg-type]
    if args.get("full"):
        config["ops"] = {SYNC_OP: {"config": {"full_refresh": True}}}
    return config


def start_child(job: str, env: dict[str, str], server: SandboxServer, hook: str = "", full: bool = False,
                preexec: Any = None, **knobs: Any) -> subprocess.Popen[str]:
    import json

    child_env = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT),
                 "FAULT_CHILD_ARGS": json.dumps({"job": SYNC if full else job, "base_url": server.base_url,
                                                 "full": full or job == FULL, "knobs": knobs})}
    code = _CHILD.format(root=str(REPO_ROOT), hook=textwrap.dedent(hook))
    return subprocess.Popen([sys.executable, "-c", code], env=child_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=preexec)


def wait_for_file(path: Path, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited ({proc.returncode}) before {path.name}:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.send_signal(signal.SIGKILL)
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.02)
