"""The videos stream: page video/list, check the batch, write Delta (a full overwrite or an incremental merge
of the look-back window), and the history snapshot.

Every API call of a sync happens before its first write, so an API failure leaves all tables untouched; the
blocking checks run on the batch before the commit, so bad data never lands either.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc

from tiktok_organic_dagster.lake import DeltaCatalog, WriteResult
from tiktok_organic_dagster.names import ACCOUNT_COLUMN, full_sync_app_id
from tiktok_organic_dagster.settings import SourceSettings, SyncType
from tiktok_organic_dagster.sync.buffer import ChunkBuffer
from tiktok_organic_dagster.sync.changes import mark_changes
from tiktok_organic_dagster.sync.checks import CheckResult
from tiktok_organic_dagster.sync.common import (
    Partition,
    StreamResult,
    commit_info,
    partition_of,
    scoped,
    table_uris,
    validate,
)
from tiktok_organic_dagster.sync.listing import SLICES_PER_WORKER, list_videos, slice_boundaries
from tiktok_organic_dagster.sync.memory import release_unused, use_system_pool
from tiktok_organic_dagster.sync.records import concat, history_rows, records_to_table
from tiktok_organic_dagster.tiktok import QueryResult, TikTokClient
from tiktok_organic_dagster.tiktok.streams import TS, VIDEO_COUNTER_FIELDS, VIDEO_COUNTERS, VIDEO_FIELDS

# What a full sync keeps uncompressed per video: the key, counters and bookkeeping for the checks and the
# history table, and the preview columns of the materialization (see buffer.ChunkBuffer).
SUMMARY_COLUMNS = ("id", "open_id", "create_time", "title", *VIDEO_COUNTERS, "_synced_at", "_last_seen_at",
                   ACCOUNT_COLUMN)  # (present only in a multi-account source's rows)
# Listings up to this size go to the overwrite as one Arrow table (zero-copy into delta-rs, retried by the
# catalog); larger ones stream from the compressed buffer, which keeps ~100 MB per 100k videos off the peak.
STREAM_MIN_ROWS = 20_000


def _cutoff_seconds(catalog: DeltaCatalog, uri: str, lookback_days: int, part: Partition) -> int | None:
    """Newest known create_time minus the look-back window; None when the table is empty."""
    newest = catalog.max_value(uri, "create_time", partition=part)
    if newest is None:
        return None
    return int((newest - timedelta(days=lookback_days)).timestamp())


def _page_is_older(cutoff: int) -> Callable[[list[dict]], bool]:
    def stop(page: list[dict]) -> bool:
        times = [v.get("create_time") for v in page]
        return bool(times) and all(t is not None and int(t) < cutoff for t in times)

    return stop


def _refresh_counters(
    client: TikTokClient, current: pa.Table, cutoff: int, listing: pa.Table, now: datetime
) -> tuple[pa.Table | None, dict[str, object]]:
    """Fresh counters of every known video older than the look-back window, through video/query (20 ids a
    request, ``query_parallelism`` at once under the endpoint's own budget).

    Returns full rows (the table's other columns as they are, fresh counters) so one merge commits
    everything, and reports the known videos the API no longer returns: older ones video/query dropped, and
    window ones video/list did not list. Those rows are left out of the merge, so their ``_last_seen_at``
    stays where it was.
    """
    limit = pa.scalar(datetime.fromtimestamp(cutoff, timezone.utc), type=TS)
    unlisted = pc.invert(pc.is_in(current.column("id"), value_set=listing.column("id").combine_chunks()))
    is_older = pc.less(current.column("create_time"), limit)
    older = current.filter(pc.and_(is_older, unlisted))
    window_missing = current.filter(pc.and_(pc.invert(is_older), unlisted)).column("id").to_pylist()
    ids = older.column("id").to_pylist()
    result = QueryResult([], [])
    if ids:
        result = scoped("videos", lambda: client.query_videos(ids, VIDEO_COUNTER_FIELDS))
    missing = sorted([*window_missing, *result.missing_ids])
    meta: dict[str, object] = {
        "counter_refresh_ids": len(ids),
        "counter_refresh_requests": math.ceil(len(ids) / 20),
        "videos_not_returned": len(missing),
    }
    if missing:
        meta["videos_not_returned_sample"] = ", ".join(missing[:10])
    if not result.videos:
        return None, meta
    fresh = records_to_table(result.videos, {c: VIDEO_FIELDS[c] for c in VIDEO_COUNTER_FIELDS})
    # The listing's columns only: a stored column the listing lacks must not be nulled for its rows.
    rest = older.select([c for c in listing.column_names if c in older.column_names and c not in VIDEO_COUNTERS
                         and c not in ("_synced_at", "_last_seen_at")])
    rows = rest.join(fresh, "id", join_type="inner", use_threads=False)
    seen_now = pa.repeat(pa.scalar(now, type=TS), rows.num_rows)
    rows = rows.append_column("_synced_at", seen_now).append_column("_last_seen_at", seen_now)
    return rows.select([c for c in listing.column_names if c in rows.column_names]), meta


def _overwrite(catalog: DeltaCatalog, uri: str, listing: ChunkBuffer, info: dict[str, str], account: str | None
               ) -> WriteResult:
    """Write the buffered listing as one overwrite commit: a small one as a Table, a large one streamed from
    the buffer (``listing.reader`` replays it, so the catalog can retry a lost commit race)."""
    source = listing.table() if listing.rows < STREAM_MIN_ROWS else listing.reader
    return catalog.overwrite(uri, source, key=["id"], commit_info=info, app_id=full_sync_app_id(account),
                             partition=partition_of(account))


def _oldest_created(batch: pa.Table) -> datetime | None:
    """Oldest create_time of the batch; None if any is missing (then nothing can be pruned by it)."""
    created = batch.column("create_time")
    return pc.min(created).as_py() if created.null_count == 0 else None


def _merge_window(
    client: TikTokClient, catalog: DeltaCatalog, uri: str, batch: pa.Table, cutoff: int, now: datetime,
    refresh_all_counters: bool, label: str, info: dict[str, str], part: Partition,
) -> tuple[pa.Table, list[CheckResult], WriteResult, dict[str, object]]:
    """Incremental: the look-back window (plus, if asked, every older video's fresh counters) in one merge."""
    meta: dict[str, object] = {}
    listed = batch.column("id").combine_chunks()
    if refresh_all_counters:
        current = catalog.read(uri, partition=part)  # refreshed rows are rebuilt from every known video's stored row
        refreshed, meta = _refresh_counters(client, current, cutoff, batch, now)
        if refreshed is not None and refreshed.num_rows:
            batch = concat([batch, refreshed]) or batch
    else:
        # a video's create_time never changes, so stored rows of listed videos are at least as new as the oldest
        oldest = _oldest_created(batch)
        prune = ((pc.field("create_time") >= pa.scalar(oldest, type=TS)) | pc.field("create_time").is_null()
                 if oldest is not None else None)
        current = catalog.read_keys(uri, "id", listed, prune=prune, partition=part)
    checks = validate(label, batch, "id", VIDEO_COUNTERS)
    batch, matched, changed = mark_changes(batch, current, now)
    del current
    oldest = _oldest_created(batch)  # refreshed older videos included
    write = catalog.merge(uri, batch, key=["id"], commit_info=info, update_only_if_changed=False,
                          stored_at_least=("create_time", oldest) if oldest is not None else None, partition=part)
    write.updated, write.unchanged = changed, matched - changed  # payload changes, not rows rewritten
    meta["rows_seen_unchanged"] = matched - changed
    if refresh_all_counters:
        was_refreshed = pc.invert(pc.is_in(batch.column("id"), value_set=listed))
        moved = pc.equal(batch.column("_synced_at"), pa.scalar(now, type=TS))
        meta["counter_refresh_changed"] = int(pc.sum(pc.and_(was_refreshed, moved)).as_py() or 0)
    meta["lookback_cutoff"] = datetime.fromtimestamp(cutoff, timezone.utc).isoformat()
    return batch, checks, write, meta


def sync_videos(
    client: TikTokClient,
    catalog: DeltaCatalog,
    source: SourceSettings,
    *,
    full_refresh: bool,
    refresh_all_counters: bool,
    run_id: str,
    label: str,
    now: datetime | None = None,
    write_table: bool = True,
    write_history: bool = True,
    account: str | None = None,
) -> StreamResult:
    """``account``: one account of a multi-account source (its rows carry it and go to its partition).
    ``write_table`` / ``write_history``: which of the stream's two tables this run writes (an asset
    selection); both come from the same API reads. ``label`` names the table in errors."""
    use_system_pool()
    cfg = source.streams["videos"]
    now = now or datetime.now(timezone.utc)
    uri, history_uri = table_uris(catalog, source, "videos")
    incremental = cfg.sync_type is SyncType.INCREMENTAL and not full_refresh and catalog.exists(uri)
    part = partition_of(account)
    cutoff = _cutoff_seconds(catalog, uri, cfg.lookback_days, part) if incremental else None
    incremental = incremental and cutoff is not None
    stop = _page_is_older(cutoff) if incremental and cutoff is not None else None

    open_id = str(scoped("videos", client.open_id))
    extra: dict[str, object] = {"open_id": open_id, "_synced_at": now, "_last_seen_at": now}
    if account is not None:
        extra[ACCOUNT_COLUMN] = account

    def new_buffer(chunk_rows: int) -> ChunkBuffer:
        return ChunkBuffer(VIDEO_FIELDS, extra, SUMMARY_COLUMNS, chunk_rows=chunk_rows)

    fields = list(dict.fromkeys([*VIDEO_FIELDS, *cfg.extra_fields]))
    boundaries = [] if incremental else slice_boundaries(catalog, uri, client.paging_parallelism * SLICES_PER_WORKER,
                                                             part)
    listing, paging = list_videos(client, fields, new_buffer, full=not incremental, stop=stop,
                                  boundaries=boundaries)
    release_unused()
    info = commit_info(run_id, source.name, "videos", account)
    meta: dict[str, object] = {}
    write: WriteResult | None = None
    if not incremental:
        # Full: checks on the narrow summary, then the buffered chunks go into one overwrite commit.
        batch = listing.summary()
        checks = validate(label, batch, "id", VIDEO_COUNTERS)
        if write_table:
            write = _overwrite(catalog, uri, listing, info, account)
        del listing
        release_unused()
    elif write_table:
        assert cutoff is not None
        batch, checks, write, meta = _merge_window(client, catalog, uri, listing.table(), cutoff, now,
                                                   refresh_all_counters, label, info, part)
    else:
        batch = listing.table()
        checks = validate(label, batch, "id", VIDEO_COUNTERS)
    history = catalog.snapshot_merge(
        history_uri, history_rows(batch, "id", VIDEO_COUNTERS, now), key=["id"], commit_info=info, partition=part
    ) if write_history else None
    sync_type = SyncType.INCREMENTAL if incremental else SyncType.FULL_TABLE
    return StreamResult(sync_type, write, history, batch, checks, {**paging, **meta})
