"""Issue #15's scenarios: full syncs over time slices in parallel against the sequential floor and, where
the sandbox's window binds (600 per 60 s per endpoint, TikTok's default), against the rate-limit floor.

Each round gets a fresh sandbox, so no round inherits another's requests in the server's window.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from benchmarks.harness import client_override, measure

if TYPE_CHECKING:
    from benchmarks.scenarios import Bench, Row, Scenario

LATENCY_MS = 150
LIMIT, WINDOW_S = 600, 60.0
SIZES = {"5k": 5000, "20k": 20_000}
QUICK_SIZES = {"5k": 1000, "20k": 4000}


def scenarios(bench: Bench, rounds: int) -> list[Scenario]:
    from benchmarks.scenarios import Scenario

    heavy = max(1, rounds - 1)
    return [
        Scenario("sliced full sync 5k @150ms", lambda r: _run(bench, "5k", r, sliced=True), heavy),
        Scenario("sequential full sync 5k @150ms", lambda r: _run(bench, "5k", r, sliced=False), heavy),
        Scenario("sliced full sync 20k @150ms", lambda r: _run(bench, "20k", r, sliced=True), heavy),
    ]


def _run(bench: Bench, size: str, rnd: int, *, sliced: bool) -> None:
    sizes = QUICK_SIZES if bench.sizes["main"] < 5000 else SIZES
    key = f"{'sliced' if sliced else 'seq'}-{size}"
    sbx = bench._fresh_sandbox(key, videos=sizes[size], latency_ms=LATENCY_MS, rate_limit=LIMIT,
                               rate_window_seconds=WINDOW_S)
    config = None if sliced else {"resources": client_override(sbx.env, paging_parallelism=1)}
    m = measure(sbx, bench.target(key, f"{key}-{rnd}"), bench.ws, run_config=config)
    m.extra["videos"] = sizes[size]
    bench.results.add(key, m)


def rate_floor_s(requests: int) -> float:
    """The earliest the n-th request can go under 'at most LIMIT per WINDOW_S sliding window'."""
    return ((requests - 1) // LIMIT) * WINDOW_S


def rows(bench: Bench) -> list[Row]:
    from benchmarks.scenarios import Row, _verdict

    best, out = bench.results.best, []
    seq = best.get("seq-5k")
    for size in ("5k", "20k"):
        m = best.get(f"sliced-{size}")
        if m is None:
            continue
        list_requests = m.requests.get("video_list", 0)
        floor = m.floor_s(LATENCY_MS)  # what a sequential client pays at best for these requests
        pages = math.ceil(m.extra["videos"] / 20)
        sequential_floor = (pages + 2) * LATENCY_MS / 1000
        got_429 = int(m.statuses.get("429", 0))
        meta = m.meta.get("videos", {})
        paging = f"paging {meta.get('paging', '?')}, {meta.get('paging_slices', '?')} slices"
        if size == "5k":
            share = m.wall_s / sequential_floor
            target = _verdict(share <= 0.25 and got_429 == 0,
                              f"<= 0.25x the sequential floor: x{share:.2f}; 0 x 429 ({got_429})")
            ref = f"{paging}; {list_requests} list requests; sequential floor {sequential_floor:.1f} s"
            if seq is not None:
                ref += f"; one cursor walk measured {seq.wall_s:.1f} s (x{seq.wall_s / sequential_floor:.2f})"
        else:
            rate_floor = rate_floor_s(list_requests)
            if not rate_floor:
                out.append(Row(f"sliced full sync, {m.extra['videos']:,} videos, {LATENCY_MS} ms", m.extra["videos"],
                               m.total_requests, m.wall_s, floor, m.peak_rss_mb,
                               f"{paging}; {list_requests} list requests fit in one window: not rate-bound", ""))
                continue
            share = m.wall_s / rate_floor
            target = _verdict(share <= 1.15 and got_429 == 0,
                              f"<= 1.15x the rate-limit floor ({rate_floor:.0f} s for {list_requests} list "
                              f"requests at {LIMIT}/{WINDOW_S:g} s): x{share:.2f}; 0 x 429 ({got_429})")
            ref = f"{paging}; sequential floor {sequential_floor:.1f} s"
        out.append(Row(f"sliced full sync, {m.extra['videos']:,} videos, {LATENCY_MS} ms, limit {LIMIT}/"
                       f"{WINDOW_S:g} s", m.extra["videos"], m.total_requests, m.wall_s, floor, m.peak_rss_mb,
                       ref, target))
    if seq is not None:
        out.append(Row(f"one cursor walk (paging_parallelism 1), {seq.extra['videos']:,} videos, {LATENCY_MS} ms",
                       seq.extra["videos"], seq.total_requests, seq.wall_s, seq.floor_s(LATENCY_MS),
                       seq.peak_rss_mb, "what every sequential connector pays", ""))
    return out



