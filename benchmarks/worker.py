"""One measurement in a fresh interpreter: ``python -m benchmarks.worker`` reads a JSON spec on stdin and
prints one JSON result line on stdout.

Fresh per measurement so ``ru_maxrss`` is this scenario's peak alone. The environment (sandbox URL and
credentials, Delta root, token store) comes from the parent; the spec never holds secrets. Timing starts
after the imports a code location does anyway (``tiktok_organic_dagster.defs.definitions``) and covers
building the definitions plus ``execute_in_process`` — the work of one run. Import time is reported
separately.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import dagster as dg  # noqa: E402
import requests  # noqa: E402

import tiktok_organic_dagster.defs.definitions  # noqa: E402,F401  (what loading the code location imports)
from tiktok_organic_dagster.defs.definitions import build_definitions  # noqa: E402
from tiktok_organic_dagster.names import SYNC_OP  # noqa: E402
from tiktok_organic_dagster.settings import load_settings  # noqa: E402
from tiktok_organic_dagster.tiktok.client import TikTokClient  # noqa: E402
from tiktok_organic_dagster.tiktok.streams import VIDEO_FIELDS  # noqa: E402

IMPORT_S = time.perf_counter() - _T0
KEEP_META = ("api_requests", "api_429s", "api_retries", "token_refreshes", "rows_synced", "rows_inserted",
             "rows_updated", "rows_unchanged", "counter_refresh_ids", "counter_refresh_requests",
             "counter_refresh_changed", "videos_not_returned", "sync_type", "paging", "paging_slices",
             "paging_fallback_reason")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _trace_sends() -> list[tuple[str, float]]:
    """Record (endpoint, send time) of every client request: used only by the rate-budget scenario."""
    log: list[tuple[str, float]] = []
    original = TikTokClient._send

    def traced(self: TikTokClient, rt: Any, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        log.append((endpoint, time.perf_counter()))
        return original(self, rt, endpoint, *args, **kwargs)

    TikTokClient._send = traced  # type: ignore[method-assign]
    return log


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    trace = _trace_sends() if spec.get("trace") else None
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    defs = build_definitions(load_settings())
    job = defs.resolve_job_def(spec["job"])
    result = job.execute_in_process(instance=instance, run_config=spec.get("run_config"), raise_on_error=False)
    wall = time.perf_counter() - started
    out: dict[str, Any] = {"wall_s": wall, "success": result.success, "meta": {}}
    if not result.success:
        failures = [e for e in result.all_events if e.is_failure]
        out["error"] = "; ".join(str(e.message)[:300] for e in failures[:2])
    for mat in result.asset_materializations_for_node(SYNC_OP):
        if mat.asset_key.path[-1].endswith("_history"):
            continue
        stream = mat.asset_key.path[-1]
        out["meta"][stream] = {k: getattr(v, "value", v) for k, v in mat.metadata.items() if k in KEEP_META}
    if trace is not None:
        origin = trace[0][1] if trace else 0.0
        out["sends"] = [(ep, t - origin) for ep, t in trace]
    return out


def run_bare(spec: dict[str, Any]) -> dict[str, Any]:
    """The reference client: a keep-alive requests.Session POSTing video/list with the cursor, nothing else.

    The access token is taken (untimed) from the same token store the jobs use.
    """
    import os

    client = TikTokClient(client_id=os.environ["TIKTOK_CLIENT_ID"], client_secret=os.environ["TIKTOK_CLIENT_SECRET"],
                          refresh_token=os.environ.get("TIKTOK_REFRESH_TOKEN", ""),
                          api_base_url=os.environ["TIKTOK_API_BASE_URL"])
    token = client._rt().tokens.access_token()
    client.close()
    session = requests.Session()
    url = os.environ["TIKTOK_API_BASE_URL"] + "/v2/video/list/?fields=" + ",".join(VIDEO_FIELDS)
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    cursor, pages, videos = None, 0, 0
    while True:
        body: dict[str, int] = {"max_count": 20}
        if cursor is not None:
            body["cursor"] = cursor
        data = session.post(url, json=body, headers=headers).json()["data"]
        pages += 1
        videos += len(data["videos"])
        if not data["has_more"]:
            break
        cursor = data["cursor"]
    wall = time.perf_counter() - started
    return {"wall_s": wall, "success": True, "pages": pages, "videos": videos, "meta": {}}


def main() -> None:
    spec = json.loads(sys.stdin.read())
    profiler = None
    if spec.get("profile"):  # optional: pip install pyinstrument (not a project dependency)
        import pyinstrument

        profiler = pyinstrument.Profiler(interval=0.0005)
        profiler.start()
    out = run_bare(spec) if spec["kind"] == "bare" else run_job(spec)
    if profiler is not None:
        profiler.stop()
        with open(spec["profile"], "w") as fh:
            fh.write(profiler.output_text(unicode=False, show_all=True))
    out["import_s"] = IMPORT_S
    out["peak_rss_mb"] = _peak_rss_mb()
    sys.stdout.write("\n" + json.dumps(out, default=str) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
