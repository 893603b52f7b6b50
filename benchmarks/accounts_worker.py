"""The processes of the multi-account benchmark: ``python -m benchmarks.accounts_worker`` reads a JSON spec
on stdin and prints JSON lines on stdout (the last one is the result).

Modes: ``onboard`` (``tiktok-organic-accounts add`` per account, in this one process, then the pool's
limit), ``slot`` (one pool slot: its accounts' runs back to back, each a Dagster run in this process, after
a ``go`` line so every slot starts together), ``single`` (one run, to compare with a ``dagster job execute``
process), ``definitions`` (settings + definitions, timed), ``register`` (dynamic partitions only), ``tick``
(evaluate a schedule) and ``verify`` (rows per account). The environment (sandbox URL, credentials,
DAGSTER_HOME, settings file) comes from the parent; specs never hold secrets and nothing here prints one.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from typing import Any  # noqa: E402

import dagster as dg  # noqa: E402

import tiktok_organic_dagster.defs.definitions  # noqa: E402,F401  (what loading the code location imports)
from tiktok_organic_dagster.defs.definitions import build_definitions  # noqa: E402
from tiktok_organic_dagster.names import (  # noqa: E402
    ACCOUNT_COLUMN,
    COMMIT_PREFIX,
    accounts_partitions_name,
    pool_name,
    schedule_name,
    sync_job_name,
    sync_op_name,
)
from tiktok_organic_dagster.settings import load_settings  # noqa: E402

IMPORT_S = time.perf_counter() - _T0
SOURCE = "agency"  # benchmarks.accounts.SOURCE
KEEP_META = ("sync_type", "api_requests", "paging", "paging_slices", "rows_synced")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write("\n" + json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def onboard(spec: dict[str, Any]) -> dict[str, Any]:
    """Each account's token is already in the variable the sandbox's env file names for it."""
    from tiktok_organic_dagster.cli.accounts import main

    started = time.perf_counter()
    for account, var in spec["accounts"].items():
        out = io.StringIO()
        code = main(["add", "--source", SOURCE, "--account", account, "--refresh-token-env", var], stdout=out)
        if code != 0:
            return {"success": False, "error": f"accounts add {account}: exit {code}"}
    onboard_s = time.perf_counter() - started
    # what `dagster instance concurrency set tiktok_api_<source> <max_parallel_accounts>` does
    with dg.DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots(pool_name(SOURCE), int(spec["pool_limit"]))
    return {"success": True, "onboard_s": onboard_s}


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, account: str) -> dict[str, Any]:
    started = time.time()
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=account,
                                                          raise_on_error=False)
    out: dict[str, Any] = {"account": account, "start": started, "end": time.time(), "success": result.success,
                           "rss_mb": _peak_rss_mb()}
    for mat in result.asset_materializations_for_node(sync_op_name(SOURCE)):
        if mat.asset_key.path[-1] == "videos":
            out["videos"] = {k: getattr(v, "value", v) for k, v in mat.metadata.items() if k in KEEP_META}
    if not result.success:
        failures = [e for e in result.all_events if e.is_failure]
        out["error"] = "; ".join(str(e.message)[:300] for e in failures[:2])
    return out


def slot(spec: dict[str, Any]) -> dict[str, Any]:
    """The definitions are built once, as a code server holds them; each run builds its own resources
    (client, rate budget) as a run does."""
    built = time.perf_counter()
    defs = build_definitions(load_settings())
    defs_s = time.perf_counter() - built
    _emit({"ready": True})
    if sys.stdin.readline().strip() != "go":
        return {"success": False, "error": "no go"}
    with dg.DagsterInstance.get() as instance:
        runs = [_run(defs, instance, spec["job"], account) for account in spec["accounts"]]
    return {"success": all(r["success"] for r in runs), "runs": runs, "defs_s": defs_s}


def single(spec: dict[str, Any]) -> dict[str, Any]:
    built = time.perf_counter()
    defs = build_definitions(load_settings())
    defs_s = time.perf_counter() - built
    with dg.DagsterInstance.get() as instance:
        run = _run(defs, instance, spec["job"], spec["account"])
    return {"success": run["success"], "run_s": run["end"] - run["start"], "defs_s": defs_s,
            "error": run.get("error")}


def definitions(spec: dict[str, Any]) -> dict[str, Any]:
    """Reading the settings and building the definitions (the part of a load that could see accounts)."""
    times = []
    for _ in range(int(spec["rounds"])):
        started = time.perf_counter()
        build_definitions(load_settings()).get_repository_def()
        times.append(time.perf_counter() - started)
    return {"success": True, "defs_s": times}


def register(spec: dict[str, Any]) -> dict[str, Any]:
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(accounts_partitions_name(SOURCE), list(spec["accounts"]))
    return {"success": True}


def tick(spec: dict[str, Any]) -> dict[str, Any]:
    """The regular sync's schedule evaluated as the daemon would: one RunRequest per registered account."""
    defs = build_definitions(load_settings())
    schedule = defs.resolve_schedule_def(schedule_name(sync_job_name(SOURCE)))
    times, requests = [], 0
    with dg.DagsterInstance.get() as instance:
        for _ in range(int(spec["rounds"])):
            context = dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime.now(timezone.utc),
                                                repository_def=defs.get_repository_def())
            started = time.perf_counter()
            data = schedule.evaluate_tick(context)
            times.append(time.perf_counter() - started)
            requests = len(data.run_requests or [])
    return {"success": True, "tick_s": times, "run_requests": requests}


def verify(spec: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.compute as pc

    from tiktok_organic_dagster.lake import DeltaCatalog

    catalog = DeltaCatalog(root_uri=os.environ["TIKTOK_DELTA_ROOT"], metadata_prefix=COMMIT_PREFIX)
    counts = {}
    for table in ("videos", "user_info"):
        data = catalog.read(catalog.table_uri("raw", "tiktok_organic", table), columns=[ACCOUNT_COLUMN])
        counts[table] = {str(r["values"]): int(r["counts"]) for r in pc.value_counts(data.column(ACCOUNT_COLUMN))
                         .to_pylist()}
    return {"success": True, "rows": counts}


MODES = {"onboard": onboard, "slot": slot, "single": single, "definitions": definitions, "register": register,
         "tick": tick, "verify": verify}


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    out = MODES[spec["mode"]](spec)
    out.update(import_s=IMPORT_S, peak_rss_mb=_peak_rss_mb())
    _emit(out)


if __name__ == "__main__":
    main()
