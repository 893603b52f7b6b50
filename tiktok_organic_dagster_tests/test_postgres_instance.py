"""The project on a Dagster instance backed by a real PostgreSQL server, as production deployments run it.

Every deployment here is a DAGSTER_HOME whose dagster.yaml puts run, event-log and schedule storage in its own
database on the session's PostgreSQL server (fixtures_postgres) and carries the project's concurrency settings
(the ``tiktok_organic/source`` run-tag limit and the pool default) copied from the repository's dagster.yaml,
against the bundled sandbox TikTok API over HTTP. Only public surfaces are used: the Dagster CLI, a code server
(``dagster api grpc``), ``dagster-daemon run``, ``dagster-webserver``'s GraphQL, job/schedule/sensor names,
environment variables, Postgres itself, and the Delta tables read with ``deltalake``.

- CLI: the full sync, then the incremental sync, run with ``dagster job execute``; runs, materializations,
  metadata and the pool's limit are read back from Postgres (through ``DagsterInstance.get()`` and in SQL).
- Daemon: a code server holds the code and the TikTok credentials; ``dagster-daemon`` and ``dagster-webserver``
  only know the instance. The catch-up sensor's first evaluation asks for a full sync of the never-synced lake,
  a run submitted over GraphQL while that one is queued or running waits for it (one run per source: the
  account's pool is widened to 2 slots there, so that the tag limit is what holds it), and the
  regular schedule (made to tick every minute) launches its run; all through the queued run coordinator and
  the default run launcher, every tick and run recorded in Postgres.
- Secret scan: the Postgres databases (every table, event_logs and runs included), what the processes printed
  and the files under DAGSTER_HOME hold no client secret, no token the sandboxes issued (refreshed mid-run in
  the CLI deployment) and not the Postgres password; the runs wrote nothing under the working directory.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml
from dagster_graphql import DagsterGraphQLClient
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from deltalake import DeltaTable

from tiktok_organic_dagster.names import CATCHUP_SENSOR, CODE_LOCATION, FULL_SYNC_JOB, SYNC_JOB, SYNC_SCHEDULE
from tiktok_organic_dagster.sandbox import Faults, SandboxConfig, SandboxServer
from tiktok_organic_dagster_tests.fixtures_postgres import PostgresServer
from tiktok_organic_dagster_tests.helpers import patched_env, sandbox_env

ROOT = Path(__file__).resolve().parent.parent
SYNC, FULL = SYNC_JOB, FULL_SYNC_JOB
SOURCE_TAG = "tiktok_organic/source"
POOL = "tiktok_api_tiktok_organic"
LOCATION = CODE_LOCATION
TABLES = ("user_info", "user_info_history", "videos", "videos_history")
TOKEN_SHAPE = re.compile(rb"(?:act|rft)\.[A-Za-z0-9]{20,}")
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


def _asset_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", "tiktok_organic", table])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _instance_yaml(pg: PostgresServer, db: str) -> dict:
    """Postgres storage plus the project's own concurrency settings (copied from the repository's dagster.yaml)."""
    project = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    limits = project["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": SOURCE_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    assert project["concurrency"]["pools"]["default_limit"] == 1
    return {
        **project,
        "storage": {"postgres": {"postgres_db": {
            "username": pg.user,
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": pg.host,
            "port": pg.port,
            "db_name": db,
            # SQLAlchemy 2.1 maps a bare postgresql:// URL to psycopg (3); dagster-postgres installs psycopg2
            "scheme": "postgresql+psycopg2",
        }}},
        # how often the daemon looks at the queue (default 5 s); the limits themselves are the project's
        "run_queue": {"dequeue_interval_seconds": 1},
    }


@dataclass
class Deployment:
    pg: PostgresServer
    db: str
    server: SandboxServer
    tmp: Path
    home: Path
    code_env: dict[str, str]  # processes that hold the code: CLI, code server (TikTok credentials included)
    instance_env: dict[str, str]  # daemon, webserver: the instance only
    outputs: list[str] = field(default_factory=list)  # everything the processes printed
    log_files: list[Path] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        with patched_env({"DAGSTER_HOME": str(self.home),
                          "DAGSTER_PG_PASSWORD": self.pg.password}), dg.DagsterInstance.get() as instance:
            yield instance

    def sql(self, query: str, args: tuple = ()) -> list[tuple]:
        conn = self.pg.connect(self.db)
        try:
            with conn.cursor() as cur:
                cur.execute(query, args)
                return cur.fetchall()
        finally:
            conn.close()

    def dump(self) -> dict[str, bytes]:
        """Every table of the instance's database, as COPY text."""
        conn = self.pg.connect(self.db)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
                tables = [row[0] for row in cur.fetchall()]
                out = {}
                for table in tables:
                    buf = io.BytesIO()
                    cur.copy_expert(f'COPY (SELECT * FROM "{table}") TO STDOUT', buf)
                    out[table] = buf.getvalue()
                return out
        finally:
            conn.close()

    def runs(self) -> dict[str, dg.RunRecord]:
        with self.instance() as instance:
            return {r.dagster_run.run_id: r for r in instance.get_run_records()}

    def run_ids_tagged(self, key: str, value: str) -> list[str]:
        return [row[0] for row in self.sql(
            "SELECT r.run_id FROM runs r JOIN run_tags t ON t.run_id = r.run_id WHERE t.key = %s AND t.value = %s "
            "ORDER BY r.id", (key, value))]

    def status(self, run_id: str) -> str:
        return self.sql("SELECT status FROM runs WHERE run_id = %s", (run_id,))[0][0]

    def event_types(self, run_id: str) -> list[str]:
        return [row[0] for row in self.sql(
            "SELECT dagster_event_type FROM event_logs WHERE run_id = %s AND dagster_event_type IS NOT NULL "
            "ORDER BY id", (run_id,))]

    def delta(self, table: str) -> DeltaTable:
        return DeltaTable(str(self.tmp / "lake" / "raw" / "tiktok_organic" / table))


def _deploy(pg: PostgresServer, tmp: Path, name: str, video_count: int, **extra_env: str) -> Deployment:
    db = pg.create_database(f"{name}_{os.getpid()}_{int(time.time() * 1000)}")
    home = tmp / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(_instance_yaml(pg, db), sort_keys=False))
    server = SandboxServer(SandboxConfig(video_count=video_count)).start()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TIKTOK_", "DAGSTER_"))}
    # the code next to these tests, whatever the venv's editable install points at
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    instance_env = {**base, "DAGSTER_HOME": str(home), "DAGSTER_PG_PASSWORD": pg.password}
    code_env = {**instance_env, **sandbox_env(server, tmp, **extra_env)}
    return Deployment(pg=pg, db=db, server=server, tmp=tmp, home=home, code_env=code_env,
                      instance_env=instance_env)


def _cli(dep: Deployment, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dagster", *args], cwd=ROOT, env=dep.code_env,
                          capture_output=True, text=True, timeout=timeout)
    dep.outputs += [proc.stdout, proc.stderr]
    return proc


def _worktree_files() -> set[str]:
    """Tracked changes and untracked/ignored files under the working directory (caches aside, and what other
    processes of `make test` leave for a moment beside these runs: mypy's cache and log, the temporary instance
    folders of `dagster` commands other tests run without a DAGSTER_HOME)."""
    out = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return {line for line in out.splitlines()
            if not re.search(r"__pycache__|\.pytest_cache|\.ruff_cache|\.egg-info|\.venv|\.mypy_cache|\.mypy\.log|"
                             r"\.tmp_dagster_home_|\.dagster_home_tmp_", line)}


@pytest.fixture(scope="module")
def worktree_before() -> set[str]:
    return _worktree_files()


@pytest.fixture(scope="module")
def cli_deployment(postgres_server, tmp_path_factory, worktree_before, daemon_scenario) -> Iterator[Deployment]:
    """Full sync (access tokens invalidated every 2 data requests: the token rotates mid-run), 4 new videos,
    then the incremental sync, each through ``dagster job execute``.

    Requests ``daemon_scenario`` only to start it first: its waits then overlap these runs.
    """
    dep = _deploy(postgres_server, tmp_path_factory.mktemp("pg_cli"), "cli", video_count=60)
    try:
        dep.server.set_faults(Faults(invalidate_access_after=2))
        full = _cli(dep, "job", "execute", "-m", "tiktok_organic_dagster", "-j", FULL)
        assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
        dep.server.set_faults(Faults())
        dep.facts["full_truth"] = len(dep.server.videos())
        dep.server.add_videos(4)
        sync = _cli(dep, "job", "execute", "-m", "tiktok_organic_dagster", "-j", SYNC)
        assert sync.returncode == 0, sync.stdout[-3000:] + sync.stderr[-3000:]
        yield dep
    finally:
        dep.server.stop()


def test_both_jobs_through_the_cli_are_recorded_in_postgres(cli_deployment):
    dep = cli_deployment
    with dep.instance() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        records = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
        assert [(r.dagster_run.job_name, r.dagster_run.status.value) for r in records] == [
            (FULL, "SUCCESS"), (SYNC, "SUCCESS")]
        full_id, sync_id = (r.dagster_run.run_id for r in records)
        assert records[0].dagster_run.tags[SOURCE_TAG] == "tiktok_organic"
        assert records[0].dagster_run.tags["tiktok_organic/sync"] == "full"
        assert records[1].dagster_run.tags[SOURCE_TAG] == "tiktok_organic"
        assert all(r.start_time and r.end_time and r.end_time > r.start_time for r in records)

        mats = {}
        for table in TABLES:
            found = instance.fetch_materializations(_asset_key(table), limit=10).records
            assert [m.run_id for m in found] == [sync_id, full_id], table  # newest first
            mats[table] = [{k: v.value for k, v in m.asset_materialization.metadata.items()} for m in found]
        pool = instance.event_log_storage.get_concurrency_info(POOL)
        assert (pool.slot_count, pool.active_slot_count, pool.pending_step_count) == (1, 0, 0)

    videos_sync, videos_full = mats["videos"]
    n_full = dep.facts["full_truth"]
    assert videos_full["sync_type"] == "FULL_TABLE" and videos_full["rows_inserted"] == n_full
    assert videos_full["dagster/row_count"] == n_full
    assert videos_sync["sync_type"] == "INCREMENTAL" and videos_sync["rows_inserted"] == 4
    assert videos_sync["dagster/row_count"] == n_full + 4 == len(dep.server.videos())
    assert mats["user_info"][0]["sync_type"] == "FULL_TABLE" and mats["user_info"][0]["dagster/row_count"] == 1
    assert "refresh_token_days_left" in videos_sync

    # the same facts, straight from Postgres: runs, their materialization events, the asset index, the pool
    assert dep.sql("SELECT run_id, pipeline_name, status FROM runs ORDER BY id") == [
        (full_id, FULL, "SUCCESS"), (sync_id, SYNC, "SUCCESS")]
    for run_id in (full_id, sync_id):
        assert dep.event_types(run_id).count("ASSET_MATERIALIZATION") == len(TABLES)
        assert "PIPELINE_SUCCESS" in dep.event_types(run_id) and "STEP_FAILURE" not in dep.event_types(run_id)
    keys = {row[0] for row in dep.sql("SELECT asset_key FROM asset_keys")}
    assert {_asset_key(t).to_string() for t in TABLES} <= keys
    assert dep.sql('SELECT "limit", using_default_limit FROM concurrency_limits WHERE concurrency_key = %s',
                   (POOL,)) == [(1, True)]

    # the lake agrees, and its commits name the runs Postgres holds
    videos = dep.delta("videos")
    assert videos.to_pyarrow_table().num_rows == len(dep.server.videos())
    run_ids = {c.get("tiktok_organic.run_id") for c in videos.history()}
    assert {full_id, sync_id} <= run_ids

    # no sqlite fallback anywhere in DAGSTER_HOME
    assert not [p for p in dep.home.rglob("*") if p.suffix in (".db", ".sqlite")]


# ---- the daemon ----------------------------------------------------------------------------------------------


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _webserver_up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok
    except requests.RequestException:
        return False


class DaemonScenario:
    """Code server + webserver + daemon on one Postgres instance; the regular schedule ticks every minute.

    Driven from a background thread so that its wait for the schedule's minute boundary overlaps the CLI
    deployment's runs (they use another database, lake and sandbox). The code server (the only process with
    the code and the TikTok credentials) first, then the daemon and the webserver; as soon as the catch-up
    sensor's run exists, a sync is submitted over GraphQL; then the schedule's first run. :meth:`finish` waits
    for all of it, stops the processes and re-raises what went wrong.
    """

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.procs: list[subprocess.Popen] = []
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._guarded, name="daemon-scenario", daemon=True)

    def start(self) -> DaemonScenario:
        self.thread.start()
        return self

    def _guarded(self) -> None:
        try:
            self._drive()
        except BaseException as exc:  # pytest.fail raises an OutcomeException (a BaseException)
            self.error = exc

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        log = self.dep.tmp / f"{name}.log"
        with self.lock:
            if self.stopping.is_set():
                raise RuntimeError("the scenario is being stopped")
            self.dep.log_files.append(log)
            with log.open("wb") as fh:
                self.procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT))

    def wait(self, what: str, predicate, timeout: float, interval: float = 0.2):
        deadline = time.monotonic() + timeout
        dead: list = []
        while time.monotonic() < deadline and not self.stopping.is_set():
            value = predicate()
            if value:
                self.dep.facts.setdefault("phases", []).append((what, round(time.time(), 1)))
                return value
            dead = [p.args for p in self.procs if p.poll() is not None]
            if dead:
                break
            time.sleep(interval)
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.dep.log_files)
        pytest.fail(f"gave up waiting for {what} (dead processes: {dead})\n{logs}")

    def _drive(self) -> None:
        dep = self.dep
        grpc_port, web_port = _free_port(), _free_port()
        workspace = dep.tmp / "workspace.yaml"
        workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": {
            "host": "127.0.0.1", "port": grpc_port, "location_name": LOCATION}}]}))
        self.spawn("code_server", [sys.executable, "-m", "dagster", "api", "grpc", "-m", "tiktok_organic_dagster",
                                   "-h", "127.0.0.1", "-p", str(grpc_port)], dep.code_env)
        # Widen the account's pool to 2 slots: the queue also holds a run whose pool is full, so with the
        # project's limit of 1 the pool alone would keep two runs apart. At 2, only the tag limit can.
        widen = subprocess.run([sys.executable, "-m", "dagster", "instance", "concurrency", "set", POOL, "2"],
                               cwd=ROOT, env=dep.instance_env, capture_output=True, text=True, timeout=120)
        dep.outputs += [widen.stdout, widen.stderr]
        assert widen.returncode == 0, widen.stderr[-3000:]
        self.wait("the code server", lambda: _port_open(grpc_port), 120)
        dep.facts["daemon_started"] = time.time()
        self.spawn("daemon", [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
                   dep.instance_env)
        self.spawn("webserver", [sys.executable, "-m", "dagster_webserver", "-w", str(workspace),
                                 "-h", "127.0.0.1", "-p", str(web_port)], dep.instance_env)
        [sensor_run] = self.wait("the catch-up sensor's run",
                                 lambda: dep.run_ids_tagged("dagster/sensor_name", CATCHUP_SENSOR), 120)
        # the sensor's run takes seconds to start (a new process loads the code): the webserver is normally up
        # by now, and the test checks that the GraphQL run really arrived while that run was unfinished
        self.wait("the webserver", lambda: _webserver_up(web_port), 120)
        graphql_run = DagsterGraphQLClient("127.0.0.1", port_number=web_port).submit_job_execution(SYNC)
        dep.facts.update(sensor_run=sensor_run, graphql_run=graphql_run,
                         sensor_run_status_at_submit=dep.status(sensor_run))
        self.wait("both runs to finish",
                  lambda: all(dep.status(r) in FINISHED for r in (sensor_run, graphql_run)), 240)
        # the schedule's state starts at the daemon's first scheduler pass: its first tick is the next minute
        [schedule_run] = self.wait("the schedule's run",
                                   lambda: dep.run_ids_tagged("dagster/schedule_name", SYNC_SCHEDULE)[:1], 120,
                                   interval=0.5)
        dep.facts["schedule_run"] = schedule_run
        self.wait("the schedule's run to finish", lambda: dep.status(schedule_run) in FINISHED, 240)

    def stop(self) -> None:
        with self.lock:
            self.stopping.set()
        for proc in reversed(self.procs):
            _stop(proc)
        self.dep.server.stop()

    def finish(self) -> Deployment:
        self.thread.join(timeout=900)
        alive = self.thread.is_alive()
        self.stop()
        self.dep.outputs += [p.read_text(errors="replace") for p in self.dep.log_files]
        if alive:
            pytest.fail("the daemon scenario did not end within 15 minutes")
        if self.error is not None:
            raise self.error
        return self.dep


@pytest.fixture(scope="module")
def daemon_scenario(postgres_server, tmp_path_factory, worktree_before) -> Iterator[DaemonScenario]:
    dep = _deploy(postgres_server, tmp_path_factory.mktemp("pg_daemon"), "daemon", video_count=60,
                  TIKTOK_SYNC_CRON="* * * * *")
    scenario = DaemonScenario(dep).start()
    try:
        yield scenario
    finally:
        scenario.stop()


@pytest.fixture(scope="module")
def daemon_deployment(daemon_scenario) -> Deployment:
    return daemon_scenario.finish()


def _ticks(instance: dg.DagsterInstance, name: str) -> list:
    [state] = [s for s in instance.all_instigator_state() if s.instigator_name == name]
    return instance.get_ticks(state.instigator_origin_id, state.selector_id)


def test_daemon_sensor_and_schedule_launch_runs_recorded_in_postgres(daemon_deployment):
    dep = daemon_deployment
    facts = dep.facts
    runs = dep.runs()
    sensor_run, schedule_run = runs[facts["sensor_run"]].dagster_run, runs[facts["schedule_run"]].dagster_run
    assert (sensor_run.job_name, sensor_run.status.value) == (FULL, "SUCCESS")
    assert sensor_run.tags["tiktok_organic/trigger"] == "catchup_sensor"
    assert (schedule_run.job_name, schedule_run.status.value) == (SYNC, "SUCCESS")
    assert runs[facts["graphql_run"]].dagster_run.status.value == "SUCCESS"

    with dep.instance() as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        sensor_ticks = _ticks(instance, CATCHUP_SENSOR)
        schedule_ticks = _ticks(instance, SYNC_SCHEDULE)
    # the sensor evaluated once (its minimum interval is 15 minutes) and asked for the full sync
    assert [(t.status.value, list(t.run_ids)) for t in sensor_ticks] == [("SUCCESS", [sensor_run.run_id])]
    launched = [t for t in schedule_ticks if t.run_ids]
    assert launched and launched[-1].status.value == "SUCCESS" and list(launched[-1].run_ids) == [
        schedule_run.run_id]
    assert launched[-1].timestamp >= facts["daemon_started"] and launched[-1].timestamp % 60 == 0
    assert dep.sql("SELECT count(*) FROM job_ticks WHERE status = 'SUCCESS'")[0][0] >= 2

    # every run went through the queue (enqueued, then launched: STARTING is written by the daemon's dequeue)
    for run_id in (sensor_run.run_id, facts["graphql_run"], schedule_run.run_id):
        events = dep.event_types(run_id)
        lifecycle = [e for e in events if e.startswith("PIPELINE_")]
        assert lifecycle == ["PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_START", "PIPELINE_SUCCESS"], events

    # the sensor's full sync is in the lake, attributed to its run
    commits = dep.delta("videos").history()
    assert any(c.get("tiktok_organic.run_id") == sensor_run.run_id and c.get("tiktok_organic.sync_type") == "full"
               for c in commits), commits
    assert dep.delta("videos").to_pyarrow_table().num_rows == len(dep.server.videos())


def test_queued_run_coordinator_runs_one_run_per_source_at_a_time(daemon_deployment):
    """A run counts as in progress from its launch (STARTING, written by the daemon's dequeue) to its end; the
    tag limit allows one such run per source. (Run start and end alone would not show it: a run's own work
    takes a few seconds, launching its process as long, so two runs launched together may still not overlap.)"""
    dep = daemon_deployment
    facts = dep.facts
    runs = dep.runs()
    known = {facts["sensor_run"], facts["graphql_run"], facts["schedule_run"]}
    assert known <= set(runs)
    # a slow machine may have let the schedule tick again before the daemon stopped: only such runs are extra
    assert all(runs[r].dagster_run.tags.get("dagster/schedule_name") == SYNC_SCHEDULE for r in set(runs) - known)
    assert all(r.dagster_run.tags[SOURCE_TAG] == "tiktok_organic" for r in runs.values())
    # max_concurrent_runs is 4 and the pool has 2 slots: only the per-source tag limit can keep them apart
    assert dep.sql('SELECT "limit", using_default_limit FROM concurrency_limits WHERE concurrency_key = %s',
                   (POOL,)) == [(2, False)]
    types = {dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING}
    with dep.instance() as instance:
        events = {run_id: {e.dagster_event.event_type_value: e.timestamp
                           for e in instance.all_logs(run_id, of_type=types)} for run_id in runs}
    spans = sorted((ev["PIPELINE_STARTING"], runs[run_id].end_time or float("inf"), run_id)
                   for run_id, ev in events.items() if "PIPELINE_STARTING" in ev)
    assert known <= {run_id for _, _, run_id in spans}
    for (_, end, first), (launched, _, second) in zip(spans, spans[1:], strict=False):
        assert launched >= end, f"run {second} was launched at {launched}, before run {first} ended at {end}"
    # the GraphQL run was queued while the sensor's run was unfinished, and launched only once it had ended
    assert facts["sensor_run_status_at_submit"] not in FINISHED
    graphql = events[facts["graphql_run"]]
    sensor_end = runs[facts["sensor_run"]].end_time
    assert graphql["PIPELINE_ENQUEUED"] < sensor_end <= graphql["PIPELINE_STARTING"], (graphql, sensor_end)
    assert dep.sql("SELECT count(*) FROM concurrency_slots WHERE run_id IS NOT NULL")[0][0] == 0  # all freed


# ---- secrets ---------------------------------------------------------------------------------------------------


def _leaks(blob: bytes, secrets: list[bytes]) -> list[str]:
    found = [f"secret #{i} ({len(s)} chars)" for i, s in enumerate(secrets) if s in blob]
    match = TOKEN_SHAPE.search(blob)
    if match:
        found.append("token-shaped string " + match.group()[:7].decode() + "...")
    return found


def test_no_secret_in_the_postgres_instance_or_anything_printed(cli_deployment, daemon_deployment,
                                                                worktree_before):
    problems: list[str] = []
    for dep in (cli_deployment, daemon_deployment):
        secrets = [dep.server.client_secret, *dep.server.issued_tokens(), dep.pg.password]
        assert dep.server.initial_refresh_token in secrets
        secret_bytes = [s.encode() for s in secrets]
        dumps = dep.dump()
        assert {"event_logs", "runs", "run_tags", "job_ticks", "asset_keys"} <= set(dumps)
        for table, blob in dumps.items():
            problems += [f"{dep.db}.{table}: {leak}" for leak in _leaks(blob, secret_bytes)]
        for i, text in enumerate(dep.outputs):
            problems += [f"{dep.db} output #{i}: {leak}" for leak in _leaks(text.encode(), secret_bytes)]
        for path in dep.home.rglob("*"):
            if path.is_file():
                problems += [f"{path}: {leak}" for leak in _leaks(path.read_bytes(), secret_bytes)]
        # the scan looked at the real records: every run, its events and the synced values are in them
        assert all(run_id.encode() in dumps["runs"] for run_id in dep.runs())
        assert dumps["event_logs"].count(b"ASSET_MATERIALIZATION") >= 2 * len(TABLES)
        assert b"refresh_token_days_left" in dumps["event_logs"]
        # the client's own log lines about the tokens it refreshed reach the event log (without the tokens)
        assert b"access token refreshed" in dumps["event_logs"]
    # the rotations really happened (access tokens invalidated mid-run in the CLI deployment)
    assert len(cli_deployment.server.issued_tokens()) >= 5  # initial + first refresh + one mid-run
    assert cli_deployment.dump()["event_logs"].count(b"access token refreshed") >= 2
    assert problems == []
    # and the runs wrote nothing under the working directory (the lake and token store are set explicitly)
    assert _worktree_files() == worktree_before

