"""video/list over time slices in parallel: a full listing below the sequential floor of pages x round trip.

The cursor is a creation time in milliseconds, and a custom one lists the videos created before it. So the
account's history is cut into slices ``[lower, upper)`` and each slice is paged on its own thread, from
``cursor = upper`` until it returns a video older than ``lower`` (or ``has_more: false``).

Exactly once: every boundary is a whole second in milliseconds. The API shows ``create_time`` in seconds and
compares the cursor to a hidden millisecond time, so a video of second ``s`` has its hidden time in
``[s*1000, s*1000 + 999]``: it is below a boundary ``b`` exactly when ``s*1000 < b``. A slice keeps the videos
with ``create_time*1000 >= lower`` and the next slice, paged from ``cursor = lower``, gets the others — no
video is skipped or listed twice, however many share a second.

Slices come from ``boundaries`` (e.g. the stored table's create_time quantiles) or, for a first sync, by
splitting: an idle worker halves the largest remaining range of a running slice at a whole second at or
below that slice's next cursor (the running slice then stops at the new boundary).

Evidence, checked on every page; any failure raises :class:`SlicingRejected` and the caller pages
sequentially instead: within a slice create_time never increases; no video is at or after the cursor it was
listed for (an API ignoring custom cursors fails this on the first page of a lower slice); no video is in two
slices; each slice reached its lower bound or ``has_more: false``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from tiktok_organic_dagster.tiktok.errors import CursorStuckError, TikTokError
from tiktok_organic_dagster.tiktok.paging import MAX_STUCK_PAGES, parse_cursor

# No split below this: TikTok (with musical.ly's history) has no video older than 2014.
FLOOR_MS = 1_388_534_400_000
MIN_SPLIT_MS = 2_000


class Sink(Protocol):
    def extend(self, records: list[dict]) -> None: ...


S = TypeVar("S", bound=Sink)


class SlicingRejected(TikTokError):
    """The listing cannot be trusted as sliced (the API ignored a custom cursor, an order check failed):
    page sequentially instead."""


@dataclass(eq=False)
class _Slice(Generic[S]):
    upper: int | None  # ms; None = from the top
    lower: int  # ms, a whole second; 0 = to the oldest video
    sink: S
    cursor: int | None = None  # the next request's cursor (None: not asked yet)
    owner: bool = False  # a worker is paging it
    done: bool = False
    last_second: int | None = None
    first_second: int | None = None
    listed: int = 0  # videos this slice listed (which ones: the coordinator's ``seen``)
    stuck: int = 0
    requests: int = 0

    def position(self) -> int | None:
        """The cursor below which this slice still has to list (None while unknown)."""
        return self.cursor if self.cursor is not None else self.upper

    def worth_splitting(self, pos: int, max_count: int) -> bool:
        """Only a slice that has answered with videos and more to come, and whose density so far says the
        rest needs more than a couple of pages: splitting anything else would only add requests."""
        if self.cursor is None or self.first_second is None or not self.listed:
            return False
        covered = max(self.first_second * 1000 - pos, 1000)
        remaining = self.listed * (pos - max(self.lower, FLOOR_MS)) / covered
        return remaining >= 2 * max_count


@dataclass
class SlicedListing(Generic[S]):
    sinks: list[S]  # newest slice first
    slices: int
    splits: int
    requests: int


class _Coordinator(Generic[S]):
    def __init__(self, fetch: Callable[[dict[str, int]], dict[str, Any]], new_sink: Callable[[], S],
                 boundaries: Sequence[int], max_count: int) -> None:
        self.fetch, self.new_sink, self.max_count = fetch, new_sink, max_count
        edges = sorted({(b // 1000) * 1000 for b in boundaries if b > 0}, reverse=True)
        uppers: list[int | None] = [None, *edges]
        lowers = [*edges, 0]
        self.slices: list[_Slice[S]] = [_Slice(u, lo, new_sink()) for u, lo in zip(uppers, lowers, strict=True)]
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.error: BaseException | None = None
        self.seen: dict[str, _Slice[S]] = {}
        self.splits = 0

    # ------------------------------------------------------------------ scheduling
    def _claim(self) -> _Slice[S] | None:
        """An unowned slice, or a new one split off the largest running slice; None when all are done."""
        for sl in self.slices:
            if not sl.done and not sl.owner:
                sl.owner = True
                return sl
        best, best_span = None, MIN_SPLIT_MS
        for sl in self.slices:
            pos = sl.position()
            if sl.done or pos is None:
                continue
            span = pos - max(sl.lower, FLOOR_MS)
            if span >= best_span and sl.worth_splitting(pos, self.max_count):
                best, best_span = sl, span
        if best is None:
            return None
        pos = best.position()
        assert pos is not None
        mid = ((max(best.lower, FLOOR_MS) + pos) // 2) // 1000 * 1000
        if not best.lower < mid <= pos:
            return None
        new = _Slice(mid, best.lower, self.new_sink(), owner=True)
        best.lower = mid
        self.slices.insert(self.slices.index(best) + 1, new)
        self.splits += 1
        return new

    def _busy(self) -> bool:
        return any(sl.owner and not sl.done for sl in self.slices)

    def worker(self) -> None:
        try:
            while True:
                with self.lock:
                    while True:
                        if self.error is not None:
                            return
                        sl = self._claim()
                        if sl is not None:
                            break
                        if not self._busy():
                            return
                        self.wake.wait(0.05)  # a running slice may become splittable once it has a cursor
                self._page(sl)
                with self.lock:
                    sl.owner = False
                    self.wake.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            with self.lock:
                if self.error is None:
                    self.error = exc
                self.wake.notify_all()

    # ------------------------------------------------------------------ one slice
    def _page(self, sl: _Slice[S]) -> None:
        while True:
            with self.lock:
                if sl.done or self.error is not None:
                    return
                cursor = sl.position()
            body = {"max_count": self.max_count}
            if cursor is not None:
                body["cursor"] = cursor
            data = self.fetch(body)
            sl.requests += 1
            with self.lock:
                page = self._accept(sl, cursor, data)
            if page:
                sl.sink.extend(page)

    def _accept(self, sl: _Slice[S], cursor: int | None, data: dict[str, Any]) -> list[dict]:
        """Check one response against the evidence rules and keep the videos of this slice (under the lock,
        so a concurrent split's new lower bound applies to the whole page)."""
        page: list[dict] = []
        fresh = False
        for video in data.get("videos") or ():
            raw_id = video.get("id") if isinstance(video, dict) else None
            if raw_id is None:
                continue
            vid = str(raw_id)
            second = _second(video.get("create_time"), vid)
            if cursor is not None and second * 1000 >= cursor:
                raise SlicingRejected(f"video/list answered cursor {cursor} with video {vid} created at "
                                      f"{second} s, not before it: custom cursors are not honoured")
            if sl.last_second is not None and second > sl.last_second:
                raise SlicingRejected(f"video/list pages are not newest first (video {vid} at {second} s after "
                                      f"one at {sl.last_second} s)")
            sl.last_second = second
            if sl.first_second is None:
                sl.first_second = second
            if second * 1000 < sl.lower:
                sl.done = True  # reached the lower bound: the rest belongs to the next slice
                break
            other = self.seen.get(vid)
            if other is sl:
                continue
            if other is not None:
                raise SlicingRejected(f"video {vid} was listed in two time slices")
            self.seen[vid] = sl
            sl.listed += 1
            video["id"] = vid
            page.append(video)
            fresh = True
        if sl.done:
            return page
        if not data.get("has_more"):
            sl.done = True
            return page
        next_cursor = parse_cursor(data.get("cursor"))
        if next_cursor <= sl.lower:
            sl.done = True  # every later video is below the bound
        elif not fresh and next_cursor == cursor:
            sl.stuck += 1
            if sl.stuck >= MAX_STUCK_PAGES:
                raise CursorStuckError(next_cursor, sl.stuck)
        else:
            sl.stuck = 0
        sl.cursor = next_cursor
        return page


def _second(value: Any, vid: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SlicingRejected(f"video {vid} has no usable create_time ({value!r})") from None


def page_sliced(
    fetch: Callable[[dict[str, int]], dict[str, Any]],
    new_sink: Callable[[], S],
    *,
    workers: int,
    boundaries: Sequence[int] = (),
    max_count: int = 20,
) -> SlicedListing[S]:
    """List every video once over time slices paged by ``workers`` threads; ``fetch`` is one video/list
    request (thread-safe). Raises :class:`SlicingRejected` when the evidence rules fail, and the API's own
    errors as they are."""
    coord: _Coordinator[S] = _Coordinator(fetch, new_sink, boundaries, min(max(int(max_count), 1), 20))
    threads = [threading.Thread(target=coord.worker, name=f"tiktok-slice-{i}", daemon=True)
               for i in range(max(workers, 1))]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    if coord.error is not None:
        raise coord.error
    unfinished = [sl for sl in coord.slices if not sl.done]
    if unfinished:
        raise SlicingRejected(f"{len(unfinished)} time slice(s) never reached their lower bound")
    return SlicedListing([sl.sink for sl in coord.slices], len(coord.slices), coord.splits,
                         sum(sl.requests for sl in coord.slices))
