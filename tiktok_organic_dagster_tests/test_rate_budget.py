"""Sliding-window rate budget: limits bursts, is thread-safe, honours pauses."""

from __future__ import annotations

import threading
import time

import pytest
import responses

from tiktok_organic_dagster.tiktok.client import TikTokClient
from tiktok_organic_dagster.tiktok.rate_budget import RateBudget


def _max_in_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    best = 0
    j = 0
    for i, t in enumerate(stamps):
        while stamps[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def in_window(budget: RateBudget) -> int:
    """Acquisitions in the current window, measured from outside: the slots still free before one waits (on
    the fake clock the acquisition that waits moves time on, so this ends)."""
    free = 0
    while budget.acquire() == 0.0:
        free += 1
    return budget.limit - free


def test_rate_fake_clock_blocks_exactly_until_oldest_slot_expires():
    clock = FakeClock()
    budget = RateBudget(3, 1.0, clock=clock, sleep=clock.sleep)
    assert [budget.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now += 0.25
    waited = budget.acquire()  # 4th in the window: must wait until t0 + 1.0
    assert waited == pytest.approx(0.75)
    assert clock.now == pytest.approx(101.0)
    assert in_window(budget) == 1  # the three first stamps slid out at t0 + 1.0, the 4th is in


def test_rate_disabled_budget_never_waits():
    clock = FakeClock()
    budget = RateBudget(0, 1.0, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        assert budget.acquire() == 0.0
    assert clock.sleeps == []


def test_rate_pause_holds_callers_without_consuming_slots():
    clock = FakeClock()
    budget = RateBudget(5, 1.0, clock=clock, sleep=clock.sleep)
    budget.pause(2.0)
    assert budget.acquire() == pytest.approx(2.0)
    assert in_window(budget) == 1


def test_rate_threads_burst_stays_under_limit_real_clock():
    limit, window = 10, 0.5
    budget = RateBudget(limit, window)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(8):
            budget.acquire()
            with lock:
                stamps.append(time.monotonic())

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert len(stamps) == 32
    # Stamps are taken just after acquire returns (thread scheduling may delay them a little): measure
    # with a slightly narrower window so the assertion tests the budget, not the scheduler.
    assert _max_in_window(stamps, window - 0.05) <= limit
    assert elapsed >= 1.0  # 32 slots at 10 per 0.5 s need at least 3 full windows


@responses.activate
def test_rate_client_burst_of_requests_respects_configured_budget(tmp_path):
    """10 per 0.5 s through the client: server-side arrival timestamps never exceed the limit."""
    arrivals: list[float] = []

    def user_info(request):
        arrivals.append(time.monotonic())
        return 200, {}, '{"data": {"user": {"open_id": "o"}}, "error": {"code": "ok", "message": ""}}'

    responses.post("https://open.tiktokapis.com/v2/oauth/token/",
                   json={"access_token": "act.rate1234", "refresh_token": "rft.rate1234", "expires_in": 3600})
    responses.add_callback(responses.GET, "https://open.tiktokapis.com/v2/user/info/", callback=user_info)
    client = TikTokClient(client_id="ck", client_secret="cs-rate", refresh_token="rft.env-rate",
                          token_store_path=str(tmp_path / "t.json"), requests_per_minute=10,
                          rate_window_seconds=0.5)
    for _ in range(25):
        client.user_info(["open_id"])
    assert len(arrivals) == 25
    assert _max_in_window(arrivals, 0.5) <= 10
    assert arrivals[-1] - arrivals[0] >= 1.0
    assert client.stats.rate_limited == 0


def test_paced_budget_spaces_requests_from_its_start_and_across_short_runs_in_one_slot() -> None:
    """Runs of one pool slot, back to back, each pacing at its share: every window of the slot's requests
    holds at most the share, because each run's first request waits one interval too."""
    clock = FakeClock()
    share, window = 5, 10.0
    stamps: list[float] = []
    for _ in range(6):  # six short runs in one slot, each sending 3 requests and finishing at once
        budget = RateBudget(share, window, clock=clock, sleep=clock.sleep, paced=True)
        for _ in range(3):
            budget.acquire()
            stamps.append(clock.now)
    assert budget.interval == pytest.approx(window / share)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert min(gaps) >= window / share - 1e-9
    assert _max_in_window(stamps, window) <= share


def test_a_burst_allowance_per_run_would_overrun_the_slot_share() -> None:
    """The contrast that makes the test above meaningful: the sliding-window cap of ``share`` per run lets
    back-to-back short runs send far more than ``share`` in one window."""
    clock = FakeClock()
    share, window = 5, 10.0
    stamps: list[float] = []
    for _ in range(6):
        budget = RateBudget(share, window, clock=clock, sleep=clock.sleep)
        for _ in range(3):
            budget.acquire()
            stamps.append(clock.now)
        clock.now += 0.5  # the run's other work
    assert _max_in_window(stamps, window) > share


def test_paced_budget_holds_parallel_threads_to_one_request_per_interval() -> None:
    budget = RateBudget(20, 1.0, paced=True)  # one request per 50 ms
    stamps: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(3):
            budget.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    assert stamps[0] - started >= 0.045  # the first request waits one interval as well
    assert min(b - a for a, b in zip(stamps, stamps[1:], strict=False)) >= 0.045
