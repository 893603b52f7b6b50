"""Issue #13 item 7: many accounts of one TikTok app (a multi-account source).

*Slots*: do the runs of all accounts, paced at their share of the app's limit through
``max_parallel_accounts`` pool slots, reach the limit without a 429? The sandbox (its own process, one
window per endpoint for the whole app) serves every account; the accounts are onboarded with
``tiktok-organic-accounts add``; each slot is one long-lived worker process running its accounts' full syncs
back to back as real Dagster runs (``execute_in_process`` with the account's partition key), so the wall
time shows pacing and slots, not Python start-up. What a process per run would add is measured apart: one
``dagster job execute`` against one run in a warm worker. The same sync paging each account by one cursor
walk shows what time slices cost where pacing, not latency, sets the pace.

*Load*: does loading the code location stay independent of the number of accounts? Registered accounts
live in the instance (dynamic partitions) and are read only by ticks and runs; accounts listed in the
settings file are parsed at load. Each load is a fresh ``dagster definitions validate`` process.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from benchmarks.harness import ROOT, Workspace, expire_stored_access_token, timed_process
from tiktok_organic_dagster.names import CODE_LOCATION, full_sync_job_name, pool_name, sync_op_name

SOURCE = "agency"
JOB = full_sync_job_name(SOURCE)
LATENCY_MS = 20
LIMIT, WINDOW_S = 120, 10.0  # the app's limit per endpoint, scaled down from TikTok's 600 per 60 s
SLOTS = 4
SIZES = {"accounts": 100, "videos": 200}
QUICK_SIZES = {"accounts": 12, "videos": 60}
LOAD_ACCOUNTS = (0, 100, 1000)
SCENARIOS = ("accounts slots", "accounts one walk", "accounts load")
DEFS_ROUNDS = 5
ENDPOINTS = ("oauth_token", "user_info", "video_list", "video_query")


def selected(only: str) -> list[str]:
    """The scenarios ``--only`` picks (the runner's rule: any comma-separated part is a substring)."""
    parts = [p.strip() for p in only.split(",") if p.strip()]
    return [s for s in SCENARIOS if not parts or any(p in s for p in parts)]


# ---------------------------------------------------------------------------------------------- processes


def _base_env() -> dict[str, str]:
    """This environment without anything that would point a child at another setup."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("TIKTOK_", "DAGSTER_"))}


class AccountsSandbox:
    """``python -m tiktok_organic_dagster.sandbox --accounts N`` in its own process (not the client's GIL or
    RSS); counts come from its admin endpoint. ``env`` holds the credentials and each account's initial
    refresh token (``ACCOUNT_2_REFRESH_TOKEN``), read from its env file, which is then deleted."""

    def __init__(self, workdir: Path, *, accounts: int, videos: int) -> None:
        env_file = workdir / "sandbox.env"
        cmd = [sys.executable, "-m", "tiktok_organic_dagster.sandbox", "--accounts", str(accounts), "--videos",
               str(videos), "--latency-ms", str(LATENCY_MS), "--rate-limit", str(LIMIT), "--rate-window-seconds",
               str(WINDOW_S), "--env-file", str(env_file)]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                      env=_base_env(), cwd=workdir)
        assert self._proc.stdout is not None
        banner = json.loads(self._proc.stdout.readline() or "{}")
        if "base_url" not in banner:
            self.close()
            raise RuntimeError(f"sandbox did not start (exit {self._proc.poll()})")
        self.base_url: str = banner["base_url"]
        self.accounts: list[str] = banner.get("accounts") or ["account_1"]
        self.env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line)
        env_file.unlink()

    def _admin(self, method: str, path: str) -> dict[str, Any]:
        req = urllib.request.Request(self.base_url + path, method=method, data=b"{}" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def state(self) -> dict[str, Any]:
        return self._admin("GET", "/_sandbox/state")

    def reset_counts(self) -> None:
        self._admin("POST", "/_sandbox/reset_counts")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> AccountsSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _spawn(spec: dict[str, Any], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with open(log, "a") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.accounts_worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=ROOT)
    _send(proc, json.dumps(spec))
    return proc


def _send(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _next_json(stream: IO[str] | None, log: Path) -> dict[str, Any]:
    assert stream is not None
    for line in stream:
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"accounts worker exited without an answer; see {log}")


def _finish(proc: subprocess.Popen[str], log: Path) -> dict[str, Any]:
    out = _next_json(proc.stdout, log)
    proc.wait(timeout=60)
    if not out.get("success"):
        raise RuntimeError(f"accounts worker failed: {out.get('error')} (log: {log})")
    return out


def _worker(spec: dict[str, Any], env: dict[str, str], log: Path) -> dict[str, Any]:
    return _finish(_spawn(spec, env, log), log)


def _instance_home(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", path / "dagster.yaml")
    return path


def _settings(path: Path, listed: Sequence[str] = (), *, one_walk: bool = False) -> Path:
    source: dict[str, Any] = {
        "name": SOURCE,
        "credentials": {"client_id_env": "AGENCY_CLIENT_ID", "client_secret_env": "AGENCY_CLIENT_SECRET"},
        "accounts": [{"name": a, "refresh_token_env": f"{a.upper()}_REFRESH_TOKEN"} for a in listed],
        "max_parallel_accounts": SLOTS,
        "requests_per_minute": LIMIT,
        "rate_window_seconds": WINDOW_S,
    }
    if one_walk:  # the default streams, videos paged by one cursor walk instead of time slices
        source["streams"] = {"user_info": {"sync_type": "FULL_TABLE"},
                             "videos": {"sync_type": "INCREMENTAL", "paging_parallelism": 1}}
    path.write_text(yaml.safe_dump({"sources": [source]}))
    return path


# ---------------------------------------------------------------------------------------------- slots


@dataclass
class SlotsResult:
    label: str
    accounts: int
    videos: int
    wall_s: float
    requests: dict[str, int]
    statuses: dict[str, int]
    slot_list_requests: list[int]
    runs: list[dict[str, Any]]
    worker_rss_mb: list[float]
    first_run_rss_mb: list[float]
    import_s: list[float]
    defs_s: list[float]
    onboard_s: float
    rows_note: str
    rows_ok: bool
    single_run_s: list[float] = field(default_factory=list)
    single_process_s: list[float] = field(default_factory=list)
    cli_process_s: list[float] = field(default_factory=list)
    cli_rss_mb: float = 0.0
    list_requests_warm_cli: tuple[int, int] = (0, 0)

    @property
    def floor_s(self) -> float:
        return self.requests.get("video_list", 0) / (LIMIT / WINDOW_S)

    @property
    def max_at_once(self) -> int:
        events = sorted([(r["start"], 1) for r in self.runs] + [(r["end"], -1) for r in self.runs])
        level = peak = 0
        for _, step in events:
            level += step
            peak = max(peak, level)
        return peak

    @property
    def paging(self) -> str:
        kinds = sorted({f"{r['videos'].get('sync_type')} {r['videos'].get('paging')}" for r in self.runs})
        slices = [r["videos"]["paging_slices"] for r in self.runs if r["videos"].get("paging_slices")]
        return ", ".join(kinds) + (f" ({min(slices)}-{max(slices)} slices)" if slices else "")


def _env(root: Path, sbx: AccountsSandbox, settings: Path) -> dict[str, str]:
    return {**_base_env(), "TIKTOK_ORGANIC_CONFIG": str(settings),
            "DAGSTER_HOME": str(_instance_home(root / "dagster_home")), "TIKTOK_API_BASE_URL": sbx.base_url,
            "AGENCY_CLIENT_ID": sbx.env["TIKTOK_CLIENT_ID"], "AGENCY_CLIENT_SECRET": sbx.env["TIKTOK_CLIENT_SECRET"],
            "TIKTOK_DELTA_ROOT": str(root / "lake"), "TIKTOK_TOKEN_STORE": str(root / "tokens.json"),
            "PYTHONHASHSEED": "0"}


def run_slots(ws: Workspace, sizes: dict[str, int], *, one_walk: bool = False, cli_rounds: int = 0) -> SlotsResult:
    """Onboard every account, then all full syncs through the slots; ``cli_rounds`` > 0 also compares one
    run in a warm worker with one ``dagster job execute`` process."""
    label = "one-walk" if one_walk else "slots"
    root = ws.new_dir(f"accounts-{label}")
    n, videos = sizes["accounts"], sizes["videos"]
    log = root / "workers.log"
    settings = _settings(root / "settings.yaml", one_walk=one_walk)
    with AccountsSandbox(root, accounts=n, videos=videos) as sbx:
        env = _env(root, sbx, settings)
        token_vars = {a: f"{a.upper()}_REFRESH_TOKEN" for a in sbx.accounts}
        onboarded = _worker({"mode": "onboard", "accounts": token_vars, "pool_limit": SLOTS},
                            {**env, **{v: sbx.env[v] for v in token_vars.values()}}, log)
        lanes = [sbx.accounts[i::SLOTS] for i in range(SLOTS)]
        procs = [_spawn({"mode": "slot", "job": JOB, "accounts": lane}, env, log) for lane in lanes]
        for proc in procs:
            if not _next_json(proc.stdout, log).get("ready"):
                raise RuntimeError(f"slot worker not ready; see {log}")
        sbx.reset_counts()
        started = time.time()
        for proc in procs:
            _send(proc, "go")
        slots = [_finish(proc, log) for proc in procs]
        state = sbx.state()
        runs = [r for s in slots for r in s["runs"]]
        by_account = state.get("request_counts_by_account", {})
        rows = _worker({"mode": "verify"}, env, log)["rows"]
        wrong = [a for a in sbx.accounts if rows["videos"].get(a) != videos or rows["user_info"].get(a) != 1]
        result = SlotsResult(
            label, n, videos, max(r["end"] for r in runs) - started,
            {k: int(v) for k, v in state["request_counts"].items()},
            {str(k): int(v) for k, v in state["status_counts"].items()},
            [sum(by_account.get(a, {}).get("video_list", 0) for a in lane) for lane in lanes], runs,
            [s["peak_rss_mb"] for s in slots], [s["runs"][0]["rss_mb"] for s in slots],
            [s["import_s"] for s in slots], [s["defs_s"] for s in slots], onboarded["onboard_s"],
            f"every account has {videos} videos and 1 profile row" if not wrong
            else f"{len(wrong)} accounts with other rows: {wrong[:5]}", not wrong)
        if cli_rounds:
            _compare_cli(result, sbx, env, root, cli_rounds)
    return result


def _compare_cli(result: SlotsResult, sbx: AccountsSandbox, env: dict[str, str], root: Path, rounds: int) -> None:
    """The same account's full sync in a warm worker and as ``dagster job execute``. The CLI gets the full
    sync's op config explicitly: with only the partition tag it does not apply the job's partitioned config
    (the run would be the regular sync)."""
    account = sbx.accounts[0]
    config = root / "full_sync.yaml"
    config.write_text(yaml.safe_dump({"ops": {sync_op_name(SOURCE): {"config": {"full_refresh": True}}}}))
    cli = [sys.executable, "-m", "dagster", "job", "execute", "-m", CODE_LOCATION, "-j", JOB, "-c", str(config),
           "--tags", json.dumps({"dagster/partition": account})]
    lists = [0, 0]
    for _ in range(rounds):
        expire_stored_access_token(root / "tokens.json")
        sbx.reset_counts()
        t = time.perf_counter()
        single = _worker({"mode": "single", "job": JOB, "account": account}, env, root / "workers.log")
        result.single_process_s.append(time.perf_counter() - t)
        result.single_run_s.append(single["run_s"])
        lists[0] = sbx.state()["request_counts"]["video_list"]
        expire_stored_access_token(root / "tokens.json")
        sbx.reset_counts()
        wall, rss = timed_process(cli, env, root, root / "dagster-cli.log")
        lists[1] = sbx.state()["request_counts"]["video_list"]
        result.cli_process_s.append(wall)
        result.cli_rss_mb = max(result.cli_rss_mb, rss)
    result.list_requests_warm_cli = (lists[0], lists[1])


# ---------------------------------------------------------------------------------------------- load


@dataclass
class LoadResult:
    rounds: int
    load_s: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    load_rss_mb: dict[tuple[str, int], float] = field(default_factory=dict)
    defs_s: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    tick_s: dict[int, list[float]] = field(default_factory=dict)
    tick_requests: dict[int, int] = field(default_factory=dict)


def run_load(ws: Workspace, rounds: int, counts: tuple[int, ...] = LOAD_ACCOUNTS) -> LoadResult:
    root = ws.new_dir("accounts-load")
    log = root / "workers.log"
    env = {**_base_env(), "AGENCY_CLIENT_ID": "bench", "AGENCY_CLIENT_SECRET": "bench", "PYTHONHASHSEED": "0"}
    homes, listed = {}, {}
    for n in counts:
        homes[n] = _instance_home(root / f"home-{n}")
        names = [f"account_{i}" for i in range(1, n + 1)]
        if n:
            _worker({"mode": "register", "accounts": names}, {**env, "DAGSTER_HOME": str(homes[n])}, log)
            listed[n] = _settings(root / f"settings-listed-{n}.yaml", names)
    empty = _settings(root / "settings-registered.yaml")
    cases = [("registered", n, empty) for n in counts] + [("listed", n, path) for n, path in listed.items()]
    envs = {(kind, n): {**env, "DAGSTER_HOME": str(homes[n]), "TIKTOK_ORGANIC_CONFIG": str(path)}
            for kind, n, path in cases}
    cmd = [sys.executable, "-m", "dagster", "definitions", "validate", "-m", CODE_LOCATION]
    result = LoadResult(rounds)
    for _ in range(rounds):  # interleaved: a slow phase of the machine hits every case alike
        for kind, n, _path in cases:
            wall, rss = timed_process(cmd, envs[(kind, n)], root, root / "validate.log")
            result.load_s.setdefault((kind, n), []).append(wall)
            result.load_rss_mb[(kind, n)] = max(result.load_rss_mb.get((kind, n), 0.0), rss)
    for kind, n, _path in cases:
        result.defs_s[(kind, n)] = _worker({"mode": "definitions", "rounds": DEFS_ROUNDS}, envs[(kind, n)],
                                           log)["defs_s"]
    for n in counts:
        if n:
            tick = _worker({"mode": "tick", "rounds": rounds}, envs[("registered", n)], log)
            result.tick_s[n], result.tick_requests[n] = tick["tick_s"], tick["run_requests"]
    return result


# ---------------------------------------------------------------------------------------------- report


def _cell(text: str) -> str:
    return text.replace("|", "/")


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]]


def _verdict(ok: bool, text: str) -> str:
    return f"{'MET' if ok else 'NOT MET'}: {text}"


def slots_rows(r: SlotsResult) -> list[list[str]]:
    total = sum(r.requests.values())
    got_429 = int(r.statuses.get("429", 0))
    busiest, most = max(r.requests.items(), key=lambda kv: kv[1])
    per_run = [x["end"] - x["start"] for x in r.runs]
    per_slot = len(r.runs) // SLOTS
    interval = WINDOW_S / (LIMIT // SLOTS)
    per_run_list = r.requests.get("video_list", 0) / r.accounts
    counts = ", ".join(f"{ep} {r.requests.get(ep, 0):,}" for ep in ENDPOINTS)
    paging = "paging_parallelism 1 (one cursor walk)" if r.label == "one-walk" else "default paging_parallelism"
    rows = [[
        f"{r.accounts} accounts x {r.videos} videos, full sync, {LATENCY_MS} ms, app limit {LIMIT}/{WINDOW_S:g} s "
        f"per endpoint, {SLOTS} slots, {paging}", f"{r.accounts:,}", f"{r.accounts * r.videos:,}", f"{total:,}",
        f"{r.wall_s:.1f}", f"{r.floor_s:.1f}", f"{r.wall_s / r.floor_s:.2f}", str(got_429),
        f"{max(r.worker_rss_mb):.0f}",
        f"requests: {counts}; busiest endpoint {busiest} ({most:,}): floor {most / (LIMIT / WINDOW_S):.1f} s; "
        f"pacing floor of the busiest slot {max(r.slot_list_requests) * interval:.1f} s "
        f"({max(r.slot_list_requests)} list requests x {interval:.3f} s); videos: {r.paging}; {SLOTS} worker "
        f"processes x {per_slot} runs back to back, each a Dagster run in-process; runs at once max "
        f"{r.max_at_once}; a run {statistics.median(per_run):.2f} s median ({min(per_run):.2f}-{max(per_run):.2f}), "
        f"of which pacing {per_run_list:.1f} list requests x {interval:.3f} s = {per_run_list * interval:.2f} s; "
        f"RSS is a worker holding {per_slot} runs (after its first run {max(r.first_run_rss_mb):.0f} MB); "
        f"{r.rows_note}",
        _verdict(got_429 == 0 and r.rows_ok, f"0 x 429 ({got_429}); rows complete: {r.rows_ok}"),
    ]]
    if r.cli_process_s:
        cli, run, warm = min(r.cli_process_s), min(r.single_run_s), min(r.single_process_s)
        startup = cli - run
        warm_lists, cli_lists = r.list_requests_warm_cli
        rows.append([
            "one account's full sync as its own process (`dagster job execute -c full_sync.yaml`)", "1",
            f"{r.videos:,}", "-", f"{cli:.2f}", "-", "-", "-", f"{r.cli_rss_mb:.0f}",
            f"the same run in a warm worker {run:.2f} s (that worker process: {warm:.2f} s spawn to exit); "
            f"list requests {cli_lists} (warm: {warm_lists}); a process per run adds {startup:.2f} s, i.e. "
            f"runs/slots x start-up = {per_slot} x {startup:.2f} = {per_slot * startup:.0f} s per slot "
            f"(best of {len(r.cli_process_s)}; process spawn to exit)", ""])
    rows.append([f"onboard {r.accounts} accounts (`tiktok-organic-accounts add`, in one process)",
                 f"{r.accounts:,}", "-", "0", f"{r.onboard_s:.2f}", "-", "-", "-", "-",
                 f"{1000 * r.onboard_s / r.accounts:.0f} ms per account: token store entry + partition", ""])
    return rows


def slots_lines(results: list[SlotsResult]) -> list[str]:
    head = ["scenario", "accounts", "videos", "API requests", "wall s", "app-limit floor s", "x floor", "429s",
            "peak RSS MB", "reference", "target"]
    imports = [x for r in results for x in r.import_s]
    return [
        *_table(head, [row for r in results for row in slots_rows(r)]), "",
        f"- wall s = from the moment the {SLOTS} slot workers (imports done, definitions built: "
        f"{min(imports):.1f}-{max(imports):.1f} s imports, {max(x for r in results for x in r.defs_s):.2f} s "
        "definitions; not included) are told to start until the last run ends. Every run starts from a refresh "
        "token only, so it pays one token refresh.",
        f"- app-limit floor s = the sandbox's video/list requests / ({LIMIT} per {WINDOW_S:g} s): no client "
        f"of this app can be faster. Each run paces every endpoint at {LIMIT // SLOTS} per {WINDOW_S:g} s "
        f"(its share), the {SLOTS} slots share the pool `{pool_name(SOURCE)}` (limit {SLOTS}).",
    ]


def load_lines(r: LoadResult) -> list[str]:
    best = {k: min(v) for k, v in r.load_s.items()}
    defs = {k: min(v) for k, v in r.defs_s.items()}
    rows = []
    for (kind, n), times in r.load_s.items():
        what = (f"{n:,} registered (`accounts: []`)" if kind == "registered"
                else f"{n:,} listed in the settings file (and registered)")
        ref, target = f"process rounds: {', '.join(f'{t:.2f}' for t in times)}", ""
        small = (kind, 100)
        if n == max(c for k, c in r.load_s if k == kind) and small in best and n != 100:
            d_proc, d_defs = best[(kind, n)] - best[small], defs[(kind, n)] - defs[small]
            ok = d_defs <= max(0.02, 0.10 * defs[small])
            target = _verdict(ok, f"independent of accounts: {n:,} vs 100 accounts {d_defs * 1000:+.0f} ms "
                                  f"settings + definitions (allowance max(20 ms, 10%)), {d_proc:+.2f} s the "
                                  "whole process")
        rows.append([f"code-location load, {what}", f"{n:,}", f"{best[(kind, n)]:.2f}",
                     f"{defs[(kind, n)] * 1000:.0f}", f"{r.load_rss_mb[(kind, n)]:.0f}", ref, target])
    for n, times in r.tick_s.items():
        rows.append([f"schedule tick, {n:,} registered accounts", f"{n:,}", f"{min(times):.3f}", "-", "-",
                     f"{r.tick_requests[n]:,} RunRequests ({1000 * min(times) / n:.2f} ms per account); "
                     f"rounds: {', '.join(f'{t:.3f}' for t in times)}", ""])
    head = ["scenario", "accounts", f"wall s (best of {r.rounds})", f"settings + definitions ms (best of "
            f"{DEFS_ROUNDS})", "peak RSS MB", "reference", "target"]
    return [
        *_table(head, rows), "",
        "- code-location load = a fresh `python -m dagster definitions validate -m tiktok_organic_dagster` "
        "process, spawn to exit (Python start-up, imports, the settings file, the definitions, the instance), "
        "cases interleaved per round; registered accounts are dynamic partitions in that DAGSTER_HOME. settings "
        "+ definitions = `build_definitions(load_settings()).get_repository_def()` timed in one process per "
        "case after its imports: the part that could depend on the accounts, without the start-up noise.",
        "- schedule tick = `evaluate_tick` of the regular sync's schedule in one process, one RunRequest per "
        "registered account: Dagster checks each request's partition key against the instance, one query each.",
    ]


def run(ws: Workspace, *, only: str, quick: bool, rounds: int) -> list[str]:
    """The scenarios ``--only`` picks, as report lines (a heading, tables and notes)."""
    names = selected(only)
    sizes = QUICK_SIZES if quick else SIZES
    load_before = os.getloadavg()
    lines = [f"## Many accounts of one app ({', '.join(names)})", ""]
    slots, load = [], []
    for name in names:
        t = time.monotonic()
        if name == "accounts slots":
            slots.append(run_slots(ws, sizes, cli_rounds=1 if quick else rounds))
        elif name == "accounts one walk":
            slots.append(run_slots(ws, sizes, one_walk=True))
        elif name == "accounts load":
            load = [*load_lines(run_load(ws, 1 if quick else rounds)), ""]
        print(f"{name} ({time.monotonic() - t:.1f}s)", file=sys.stderr, flush=True)
    lines += [*slots_lines(slots), ""] if slots else []
    lines += load
    # the machine may be shared: its load says how far the times are from a quiet machine's
    lines += [f"- load average (1, 5, 15 min) before: {', '.join(f'{x:.1f}' for x in load_before)}; after: "
              f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores).", ""]
    return lines
