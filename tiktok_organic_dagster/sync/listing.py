"""The videos listing of a sync: time slices in parallel for a full sync, one cursor walk otherwise, and the
sequential fallback when the API's answers do not prove a sliced listing exact."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tiktok_organic_dagster.lake import DeltaCatalog
from tiktok_organic_dagster.sync.buffer import ChunkBuffer
from tiktok_organic_dagster.sync.common import scoped, scoped_pages
from tiktok_organic_dagster.tiktok import SlicingRejected, TikTokClient

logger = logging.getLogger(__name__)
SLICES_PER_WORKER = 1  # boundaries from the stored table; a worker done early splits the largest remaining slice
SLICE_CHUNK_ROWS = 100  # per-slice buffers hold few pending records (dicts, ~2 KB each): dozens fill at once


def slice_boundaries(catalog: DeltaCatalog, uri: str, slices: int, partition: tuple[str, str] | None = None
                     ) -> list[int]:
    """Millisecond boundaries (whole seconds) cutting the stored videos into ``slices`` equal counts, newest
    first; none when there is no table (the listing then splits as it goes). ``partition``: one account's."""
    if slices < 2 or not catalog.exists(uri):
        return []
    created = catalog.read(uri, columns=["create_time"], partition=partition).column("create_time").drop_null()
    n = len(created)
    if n < slices * 20:  # fewer than a page per slice: splitting as it goes is as good
        return []
    micros = pc.sort_indices(created, sort_keys=[("", "descending")])  # newest first
    newest_first = pc.take(created, micros).cast(pa.int64()).to_numpy()
    return [int(newest_first[(i * n) // slices]) // 1_000_000 * 1000 for i in range(1, slices)]


def list_videos(client: TikTokClient, fields: list[str], new_buffer: Callable[[int], ChunkBuffer], *,
                full: bool, stop: Callable[[list[dict]], bool] | None, boundaries: list[int]
                ) -> tuple[ChunkBuffer, dict[str, Any]]:
    """The listing in one buffer (newest first), and how it was paged (``paging: sliced|sequential``)."""
    if full and client.paging_parallelism > 1:
        try:
            listing = scoped("videos", lambda: client.list_videos_sliced(
                fields, lambda: new_buffer(SLICE_CHUNK_ROWS), boundaries=boundaries))
        except SlicingRejected as exc:
            logger.warning("videos: the sliced listing was rejected (%s); listing again with one cursor walk",
                           exc)
            buffer, meta = _sequential(client, fields, new_buffer, None)
            return buffer, {**meta, "paging_fallback_reason": str(exc)[:300]}
        buffer = listing.sinks[0]
        for other in listing.sinks[1:]:
            buffer.absorb(other)
        buffer.finish()
        return buffer, {"paging": "sliced", "paging_slices": listing.slices,
                        "paging_workers": client.paging_parallelism}
    return _sequential(client, fields, new_buffer, stop)


def _sequential(client: TikTokClient, fields: list[str], new_buffer: Callable[[int], ChunkBuffer],
                stop: Callable[[list[dict]], bool] | None) -> tuple[ChunkBuffer, dict[str, Any]]:
    buffer = new_buffer(ChunkBuffer.DEFAULT_CHUNK_ROWS)
    for page in scoped_pages("videos", client.iter_video_pages(fields, stop=stop)):
        buffer.extend(page)
    buffer.finish()
    return buffer, {"paging": "sequential"}
