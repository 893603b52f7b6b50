"""Plumbing shared by the scenarios: run one measurement in a fresh worker process against a sandbox.

Each measured run gets its own environment: the sandbox URL and credentials, a Delta root and a token
store. Before every run the stored access token is marked expired, so every measured run pays the token
refresh a daily schedule pays (TikTok access tokens live 24 h); the rotated refresh token is kept.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.sandbox_proc import SandboxProcess
from tiktok_organic_dagster.names import CLIENT_RESOURCE, DEFAULT_SOURCE_NAME, FULL_SYNC_JOB, SYNC_OP
from tiktok_organic_dagster_tests.helpers import expire_access_tokens

ROOT = Path(__file__).resolve().parent.parent
SOURCE = DEFAULT_SOURCE_NAME
FULL_JOB = FULL_SYNC_JOB
# BENCH_PROFILE_DIR=<dir>: every worker writes a pyinstrument profile there (needs pyinstrument installed).
PROFILE_DIR = Path(os.environ["BENCH_PROFILE_DIR"]) if os.environ.get("BENCH_PROFILE_DIR") else None


@dataclass
class Measurement:
    """One worker run: wall time (after imports), peak RSS of the worker, requests the sandbox counted."""

    wall_s: float
    peak_rss_mb: float
    import_s: float
    requests: dict[str, int]
    statuses: dict[str, int]
    query_batch_sizes: list[int]
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def sequential_requests(self) -> int:
        """Requests made one after another (everything but the parallel video/query batches)."""
        return sum(n for ep, n in self.requests.items() if ep != "video_query")

    def floor_s(self, latency_ms: float, query_parallelism: int = 1) -> float:
        """Sequential requests x latency; parallel video/query batches count once per wave."""
        sequential = self.sequential_requests()
        waves = math.ceil(self.requests.get("video_query", 0) / max(query_parallelism, 1))
        return (sequential + waves) * latency_ms / 1000.0


class Workspace:
    """Temporary directories for lakes, token stores and worker logs; removed by ``close()``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._n = 0

    def new_dir(self, label: str) -> Path:
        self._n += 1
        path = self.root / f"{self._n:03d}-{label}"
        path.mkdir()
        return path

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Target:
    """Where one account's syncs write: a Delta root and a token store, reused across its runs."""

    lake: Path
    token_store: Path

    def fresh_lake(self, workspace: Workspace, label: str) -> Target:
        return replace(self, lake=workspace.new_dir(label) / "lake")


def expire_stored_access_token(path: Path) -> None:
    """Mark the stored access token expired (keeps the rotated refresh token): the next run refreshes."""
    if path.exists():
        expire_access_tokens(path)


def client_override(env: dict[str, str], **fields: Any) -> dict[str, Any]:
    """Run config replacing the client resource's config (a resource override replaces *all* its values,
    so the secrets are re-declared as env references, never as values)."""
    config: dict[str, Any] = {
        "client_id": {"env": "TIKTOK_CLIENT_ID"},
        "client_secret": {"env": "TIKTOK_CLIENT_SECRET"},
        "refresh_token": {"env": "TIKTOK_REFRESH_TOKEN"},
        "api_base_url": env["TIKTOK_API_BASE_URL"],
        "token_store_key": SOURCE,
        **fields,
    }
    return {CLIENT_RESOURCE: {"config": config}}


def full_refresh_ops() -> dict[str, Any]:
    return {SYNC_OP: {"config": {"full_refresh": True}}}


def _run_env(sandbox: SandboxProcess, target: Target, **extra: str) -> dict[str, str]:
    """A measured process's environment: the sandbox's credentials, the target's lake and token store."""
    env = {**os.environ, **sandbox.env, "TIKTOK_DELTA_ROOT": str(target.lake),
           "TIKTOK_TOKEN_STORE": str(target.token_store), "PYTHONHASHSEED": "0", **extra}
    env.pop("TIKTOK_ORGANIC_CONFIG", None)
    return env


def _profile_path(target: Target, job: str) -> str | None:
    """A fresh file per run (several runs can share one lake)."""
    if PROFILE_DIR is None:
        return None
    n = len(list(PROFILE_DIR.glob(f"{target.lake.parent.name}-*.txt")))
    return str(PROFILE_DIR / f"{target.lake.parent.name}-{n}-{job}.txt")


def measure(sandbox: SandboxProcess, target: Target, workspace: Workspace, *, kind: str = "job",
            job: str = FULL_JOB, run_config: dict[str, Any] | None = None, trace: bool = False,
            expire_token: bool = True) -> Measurement:
    """Run one worker process and return what it and the sandbox measured."""
    if expire_token:
        expire_stored_access_token(target.token_store)
    sandbox.reset_counts()
    env = _run_env(sandbox, target)
    if run_config is not None and job == FULL_JOB and "ops" not in run_config:
        run_config = {**run_config, "ops": full_refresh_ops()}  # explicit run config replaces the job's
    spec = {"kind": kind, "job": job, "run_config": run_config, "trace": trace,
            "profile": _profile_path(target, job)}
    log = target.token_store.parent / f"worker-{kind}.log"
    with open(log, "a") as stderr:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.worker"], input=json.dumps(spec), text=True,
                              stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=ROOT, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark worker failed (exit {proc.returncode}); see {log}")
    out = json.loads(lines[-1])
    if not out.get("success"):
        raise RuntimeError(f"benchmark run of {job} failed: {out.get('error')} (log: {log})")
    counts = sandbox.counts()
    extra = {k: v for k, v in out.items() if k in ("pages", "videos", "sends")}
    return Measurement(out["wall_s"], out["peak_rss_mb"], out["import_s"], counts["requests"],
                       counts["statuses"], counts["query_batch_sizes"], out.get("meta", {}), extra)


def timed_process(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[float, float]:
    """Wall time from spawn to exit, and the peak RSS of the process and what it started (``wait4``)."""
    started = time.perf_counter()
    with open(log, "a") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[2:5])} failed (exit {code}); see {log}")
    return wall, usage.ru_maxrss / 1024.0


def measure_cli(sandbox: SandboxProcess, target: Target, workspace: Workspace, *, run_config: dict[str, Any],
                job: str = FULL_JOB) -> Measurement:
    """The same run as ``measure`` through ``dagster job execute -m tiktok_organic_dagster`` with its own
    ``DAGSTER_HOME`` (sqlite storage): wall time from spawn to exit, imports included, and the peak RSS of
    that whole process (``wait4``: the CLI and anything it started)."""
    expire_stored_access_token(target.token_store)
    sandbox.reset_counts()
    home = workspace.new_dir("dagster-home")
    config = home / "run_config.json"  # YAML is a superset of JSON: what -c reads
    if job == FULL_JOB and "ops" not in run_config:
        run_config = {**run_config, "ops": full_refresh_ops()}
    config.write_text(json.dumps(run_config))
    env = _run_env(sandbox, target, DAGSTER_HOME=str(home))
    cmd = [sys.executable, "-m", "dagster", "job", "execute", "-m", "tiktok_organic_dagster", "-j", job,
           "-c", str(config)]
    wall, rss = timed_process(cmd, env, ROOT, home / "dagster-cli.log")
    counts = sandbox.counts()
    return Measurement(wall, rss, 0.0, counts["requests"], counts["statuses"],
                       counts["query_batch_sizes"])


def lookback_requests(create_times_before: list[int], create_times_after: list[int], days: int) -> int:
    """Token + user/info + video/list pages up to the first page wholly older than the look-back window."""
    cutoff = create_times_before[0] - days * 86400
    pages = 0
    for start in range(0, len(create_times_after), 20):
        pages += 1
        if all(t < cutoff for t in create_times_after[start:start + 20]):
            break
    return 2 + pages
