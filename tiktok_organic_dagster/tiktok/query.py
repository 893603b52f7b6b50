"""video/query: known videos by id, in batches of at most 20, several batches in flight."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

QUERY_BATCH = 20


@dataclass(frozen=True)
class QueryResult:
    """video/query outcome: videos in request order, and the requested ids the API silently dropped."""

    videos: list[dict]
    missing_ids: list[str]

    @property
    def by_id(self) -> dict[str, dict]:
        return {v["id"]: v for v in self.videos}


def query_in_batches(run: Callable[[list[str]], list[dict]], video_ids: Sequence[str],
                     parallelism: int) -> QueryResult:
    """``run(batch)`` is one request; batches run ``parallelism`` at once (the endpoint's budget paces them)."""
    ids = list(dict.fromkeys(str(i) for i in video_ids))
    if not ids:
        return QueryResult([], [])
    batches = [ids[i:i + QUERY_BATCH] for i in range(0, len(ids), QUERY_BATCH)]
    workers = min(max(parallelism, 1), len(batches))
    if workers == 1:
        results = [run(b) for b in batches]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tiktok-query") as pool:
            futures = [pool.submit(run, b) for b in batches]
            try:
                results = [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    wanted = set(ids)
    found: dict[str, dict] = {}
    for videos in results:
        for video in videos:
            vid = str(video.get("id"))
            if vid in wanted and vid not in found:
                video["id"] = vid
                found[vid] = video
    return QueryResult([found[i] for i in ids if i in found], [i for i in ids if i not in found])
