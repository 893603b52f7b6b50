"""How one stream is synced: read the API, check the batch, write Delta. No Dagster wiring here.

Every API call of a sync happens before its first write, so an API failure leaves all tables untouched; the
blocking checks run on the batch before the commit, so bad data never lands either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from tiktok_organic_dagster.checks import check_batch
from tiktok_organic_dagster.delta_catalog import DeltaCatalog, WriteResult
from tiktok_organic_dagster.settings import SourceSettings, SyncType
from tiktok_organic_dagster.streams import (
    TS,
    USER_COUNTERS,
    USER_FIELDS,
    VIDEO_COUNTER_FIELDS,
    VIDEO_COUNTERS,
    VIDEO_FIELDS,
    concat,
    history_rows,
    records_to_table,
)
from tiktok_organic_dagster.tiktok_client import QueryResult, TikTokClient
from tiktok_organic_dagster.tiktok_errors import MissingScopeError

# Pages are converted to Arrow in chunks: cheap per row, and the Python dicts of a chunk are freed at once.
_CHUNK_ROWS = 2000


class BatchCheckFailed(Exception):
    """The batch failed a blocking check; nothing was written."""

    def __init__(self, message: str, results: list[dg.AssetCheckResult]) -> None:
        super().__init__(message)
        self.results = results


@dataclass
class StreamResult:
    sync_type: SyncType
    write: WriteResult
    history: WriteResult | None
    batch: pa.Table
    checks: list[dg.AssetCheckResult]
    metadata: dict[str, object] = field(default_factory=dict)


def _commit_info(run_id: str, source: str, stream: str) -> dict[str, str]:
    return {"tiktok_organic.run_id": run_id, "tiktok_organic.source": source, "tiktok_organic.stream": stream}


def _scoped(stream: str, call: Callable[[], object]) -> object:
    """Name the stream in scope errors: the user must know what to re-authorize for."""
    try:
        return call()
    except MissingScopeError as exc:
        raise MissingScopeError(exc.scope, f"stream '{stream}' cannot sync: {exc}") from None


def _scoped_pages(stream: str, pages: Iterator[list[dict]]) -> Iterator[list[dict]]:
    """Like :func:`_scoped` for a generator: its requests (and scope errors) happen while it is iterated."""
    try:
        yield from pages
    except MissingScopeError as exc:
        raise MissingScopeError(exc.scope, f"stream '{stream}' cannot sync: {exc}") from None


def _validate(asset_key: dg.AssetKey, batch: pa.Table, key: str, counters: tuple[str, ...]) -> list:
    results = check_batch(asset_key, batch, key, counters)
    failed = [r.check_name for r in results if not r.passed]
    if failed:
        raise BatchCheckFailed(
            f"{asset_key.to_user_string()}: blocking check(s) {failed} failed on the synced batch; "
            "nothing was written and the table stays at its last good version",
            results,
        )
    return results


def _cutoff_seconds(catalog: DeltaCatalog, uri: str, lookback_days: int) -> int | None:
    """Newest known create_time minus the look-back window; None when the table is empty."""
    known = catalog.read(uri, columns=["create_time"]).column("create_time")
    newest = pc.max(known).as_py()
    if newest is None:
        return None
    return int((newest - timedelta(days=lookback_days)).timestamp())


def _page_is_older(cutoff: int) -> Callable[[list[dict]], bool]:
    def stop(page: list[dict]) -> bool:
        times = [v.get("create_time") for v in page]
        return bool(times) and all(t is not None and int(t) < cutoff for t in times)

    return stop


def _refresh_counters(
    client: TikTokClient, catalog: DeltaCatalog, uri: str, cutoff: int, seen: set[str], now: datetime
) -> tuple[pa.Table | None, dict[str, object]]:
    """Fresh counters for known videos outside the look-back window, through video/query (20 ids a call).

    Returns full rows (the table's other columns kept as they are) so one merge commits everything.
    """
    current = catalog.read(uri)
    limit = pa.scalar(datetime.fromtimestamp(cutoff, timezone.utc), type=TS)
    older = current.filter(pc.less(current.column("create_time"), limit))
    ids = [i for i in older.column("id").to_pylist() if i not in seen]
    if not ids:
        return None, {"counter_refresh_ids": 0}
    result: QueryResult = _scoped("videos", lambda: client.query_videos(ids, VIDEO_COUNTER_FIELDS))  # type: ignore[assignment]
    fresh = records_to_table(result.videos, {c: VIDEO_FIELDS[c] for c in VIDEO_COUNTER_FIELDS},
                             {"_synced_at": now, "_last_seen_at": now})
    rest = older.drop_columns([c for c in (*VIDEO_COUNTERS, "_synced_at", "_last_seen_at")
                               if c in older.column_names])
    rows = fresh.join(rest, "id", join_type="inner")
    meta: dict[str, object] = {
        "counter_refresh_ids": len(ids),
        "counter_refresh_requests": math.ceil(len(ids) / 20),
        "videos_not_returned": len(result.missing_ids),
    }
    if result.missing_ids:
        meta["videos_not_returned_sample"] = ", ".join(sorted(result.missing_ids)[:10])
    return rows, meta


def sync_videos(
    client: TikTokClient,
    catalog: DeltaCatalog,
    source: SourceSettings,
    *,
    full_refresh: bool,
    refresh_all_counters: bool,
    run_id: str,
    asset_key: dg.AssetKey,
    now: datetime | None = None,
) -> StreamResult:
    cfg = source.streams["videos"]
    now = now or datetime.now(timezone.utc)
    uri = catalog.table_uri(cfg.layer, cfg.folder, source.table_name("videos"))
    history_uri = catalog.table_uri(cfg.layer, cfg.folder, source.table_name("videos") + "_history")
    incremental = cfg.sync_type is SyncType.INCREMENTAL and not full_refresh and catalog.exists(uri)
    cutoff = _cutoff_seconds(catalog, uri, cfg.lookback_days) if incremental else None
    incremental = incremental and cutoff is not None
    stop = _page_is_older(cutoff) if incremental and cutoff is not None else None

    open_id = str(_scoped("videos", client.open_id))
    extra = {"open_id": open_id, "_synced_at": now, "_last_seen_at": now}
    chunks: list[pa.Table] = []
    buffer: list[dict] = []
    seen: set[str] = set()
    fields = list(dict.fromkeys([*VIDEO_FIELDS, *cfg.extra_fields]))
    pages = _scoped_pages("videos", client.iter_video_pages(fields, stop=stop))
    for page in pages:
        buffer.extend(page)
        if len(buffer) >= _CHUNK_ROWS:
            chunks.append(records_to_table(buffer, VIDEO_FIELDS, extra))
            buffer = []
    if buffer or not chunks:
        chunks.append(records_to_table(buffer, VIDEO_FIELDS, extra))
    batch = concat(chunks)
    assert batch is not None
    del chunks, buffer
    meta: dict[str, object] = {}
    if incremental and refresh_all_counters and cutoff is not None:
        seen = set(batch.column("id").to_pylist())
        refreshed, meta = _refresh_counters(client, catalog, uri, cutoff, seen, now)
        if refreshed is not None and refreshed.num_rows:
            batch = concat([batch, refreshed])
            assert batch is not None
    checks = _validate(asset_key, batch, "id", VIDEO_COUNTERS)

    info = _commit_info(run_id, source.name, "videos")
    if incremental:
        write = catalog.merge(uri, batch, key=["id"], commit_info=info)
        meta["lookback_cutoff"] = datetime.fromtimestamp(cutoff or 0, timezone.utc).isoformat()
    else:
        write = catalog.overwrite(uri, batch, key=["id"], commit_info=info)
    history = catalog.snapshot_merge(
        history_uri, history_rows(batch, "id", VIDEO_COUNTERS, now), key=["id"], commit_info=info
    )
    sync_type = SyncType.INCREMENTAL if incremental else SyncType.FULL_TABLE
    return StreamResult(sync_type, write, history, batch, checks, meta)


def sync_user_info(
    client: TikTokClient,
    catalog: DeltaCatalog,
    source: SourceSettings,
    *,
    full_refresh: bool,
    run_id: str,
    asset_key: dg.AssetKey,
    now: datetime | None = None,
) -> StreamResult:
    cfg = source.streams["user_info"]
    now = now or datetime.now(timezone.utc)
    uri = catalog.table_uri(cfg.layer, cfg.folder, source.table_name("user_info"))
    history_uri = catalog.table_uri(cfg.layer, cfg.folder, source.table_name("user_info") + "_history")
    fields = list(dict.fromkeys([*USER_FIELDS, *cfg.extra_fields]))
    user = _scoped("user_info", lambda: client.user_info(fields))
    batch = records_to_table([user], USER_FIELDS, {"_synced_at": now})  # type: ignore[list-item]
    checks = _validate(asset_key, batch, "open_id", USER_COUNTERS)
    info = _commit_info(run_id, source.name, "user_info")
    incremental = cfg.sync_type is SyncType.INCREMENTAL and not full_refresh and catalog.exists(uri)
    if incremental:
        write = catalog.merge(uri, batch, key=["open_id"], commit_info=info)
    else:
        write = catalog.overwrite(uri, batch, key=["open_id"], commit_info=info)
    history = catalog.snapshot_merge(
        history_uri, history_rows(batch, "open_id", USER_COUNTERS, now), key=["open_id"], commit_info=info
    )
    sync_type = SyncType.INCREMENTAL if incremental else SyncType.FULL_TABLE
    return StreamResult(sync_type, write, history, batch, checks)
