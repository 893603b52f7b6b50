"""Client-side request budget per endpoint: a thread-safe sliding window.

TikTok limits each endpoint to N requests per sliding minute and answers 429 above it. A long sync that
paces itself stays under the limit instead of collecting 429s and backing off. One budget instance is
shared by all threads of one client; separate processes do not share budgets.

Several runs of one app (accounts of a multi-account source) share the app's limit without shared state:
at most ``max_parallel_accounts`` of them run at once (a Dagster pool), and each *paces* its requests
evenly at its share, one per ``window / share`` seconds, its first one interval after it starts. Requests
of one pool slot are then at least an interval apart even when short runs follow each other in the slot,
so no window holds more than ``share`` of a slot's requests, nor more than the app's limit of all slots.
A burst allowance of ``share`` per run would not hold: a run that sent its share in five seconds and
finished leaves those requests in the window for the next run of its slot.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateBudget:
    """At most ``limit`` acquisitions in any ``window_seconds``; ``acquire`` blocks until a slot frees.

    ``limit <= 0`` disables the budget (acquire returns at once). Bookkeeping is a deque of monotonic
    timestamps, so the cost per request is O(1) amortised plus one uncontended lock.
    """

    def __init__(
        self,
        limit: int,
        window_seconds: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        paced: bool = False,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._sleep = sleep
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()
        self._blocked_until = 0.0
        # paced: one request per interval, the first one interval from now (see the module docstring)
        self.interval = window_seconds / limit if paced and limit > 0 else 0.0
        self._next_at = clock() + self.interval

    def acquire(self) -> float:
        """Take one slot, sleeping while the window is full or the server asked us to pause.

        Returns the seconds spent waiting (0.0 on the fast path).
        """
        if self.limit <= 0 and not self._blocked_until:
            return 0.0
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = self._blocked_until - now
                if wait <= 0 and self.interval:
                    wait = self._next_at - now
                    if wait <= 0:
                        self._next_at = now + self.interval
                        return waited
                elif wait <= 0:
                    if self.limit <= 0:
                        return waited
                    stamps = self._stamps
                    horizon = now - self.window_seconds
                    while stamps and stamps[0] <= horizon:
                        stamps.popleft()
                    if len(stamps) < self.limit:
                        stamps.append(now)
                        return waited
                    wait = stamps[0] - horizon
            # Sleep outside the lock so other threads can check (they will wait too); tiny floor
            # avoids a busy loop on clock granularity.
            wait = max(wait, 0.0005)
            self._sleep(wait)
            waited += wait

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` (the server's Retry-After), without consuming slots."""
        if seconds <= 0:
            return
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)
