"""The Dagster assets of one source: ``user_info`` and ``videos`` with their daily history tables.

One subsettable multi-asset per source holds every stream's table and history (a table and its history come
from the same API reads, so the history costs no extra request). Asset keys are the table's place in the
catalog: ``[layer, folder, table]``.
"""

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import dagster as dg
import pyarrow as pa
from dagster._utils.schedules import cron_string_iterator
from pydantic import Field

from tiktok_organic_dagster.checks import blocking_check_specs
from tiktok_organic_dagster.delta_catalog import DeltaCatalog
from tiktok_organic_dagster.settings import SourceSettings
from tiktok_organic_dagster.streams import USER_COUNTERS, VIDEO_COUNTERS
from tiktok_organic_dagster.sync import BatchCheckFailed, StreamResult, sync_user_info, sync_videos
from tiktok_organic_dagster.tiktok_client import ClientStats, TikTokClient

OWNERS = ["team:data-engineering"]
STREAMS = ("user_info", "videos")
SOURCE_TAG = "tiktok_organic/source"
PREVIEW_COLUMNS = {
    "videos": ["id", "create_time", "title", "view_count", "like_count", "comment_count", "share_count"],
    "user_info": ["open_id", "username", "display_name", "follower_count", "likes_count", "video_count"],
}


class SyncConfig(dg.Config):
    """Run config, editable in the launchpad or with ``--config-json``."""

    full_refresh: bool = Field(
        default=False, description="Force FULL_TABLE for this run: page everything and overwrite."
    )
    refresh_all_counters: bool | None = Field(
        default=None,
        description="videos INCREMENTAL only: also refresh counters of every known video older than the "
        "look-back window via video/query. Unset = the source setting.",
    )


def client_key(source: SourceSettings) -> str:
    return f"{source.name}_tiktok"


def catalog_key(source: SourceSettings) -> str:
    return f"{source.name}_delta"


def pool_name(source: SourceSettings) -> str:
    """One API pool per account: its steps share the account's rate budget, so they run one at a time."""
    return f"tiktok_api_{source.name}"


def cron_period(cron: str, timezone_name: str) -> timedelta:
    """Longest gap between consecutive ticks over the next few weeks (irregular crons included)."""
    ticks = cron_string_iterator(datetime.now(timezone.utc).timestamp(), cron, timezone_name)
    times = [next(ticks) for _ in range(60)]
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def freshness_policy(source: SourceSettings) -> dg.FreshnessPolicy:
    """Fresh enough when updated within one trigger period plus a quarter of it (a slow or retried run)."""
    period = cron_period(source.trigger.cron, source.trigger.timezone)
    return dg.FreshnessPolicy.time_window(fail_window=period * 1.25, warn_window=period * 1.1)


def _markdown_preview(table: pa.Table, columns: list[str], rows: int = 5) -> str:
    cols = [c for c in columns if c in table.column_names]
    head = table.select(cols).slice(0, rows).to_pylist()
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for rec in head:
        cells = [str(rec[c]).replace("|", "\\|").replace("\n", " ")[:60] for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The API endpoints each stream calls; the token refresh both need is counted once, on the run's first stream.
STREAM_ENDPOINTS = {"user_info": ("user_info",), "videos": ("video_list", "video_query")}


def _api_metadata(stats: ClientStats, stream: str, shared: bool) -> dict[str, int]:
    """This stream's requests out of the client's run totals (the streams of a run share one client)."""
    endpoints = (*STREAM_ENDPOINTS[stream], *(("oauth_token",) if shared else ()))
    return {
        "api_requests": sum(stats.requests.get(e, 0) for e in endpoints),
        "api_pages": stats.pages if stream == "videos" else 0,
        "api_retries": sum(stats.retries_by_endpoint.get(e, 0) for e in endpoints),
        "api_429s": sum(stats.rate_limited_by_endpoint.get(e, 0) for e in endpoints),
        "token_refreshes": stats.refreshes if shared else 0,
    }


def _table_metadata(catalog: DeltaCatalog, uri: str) -> dict[str, object]:
    rows, schema = catalog.describe(uri)
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type))
                                                         for f in schema]),
        "dagster/uri": dg.MetadataValue.path(uri),
    }


def _metadata(result: StreamResult, catalog: DeltaCatalog, stream: str) -> dict[str, object]:
    write = result.write
    assert write is not None
    return {
        **_table_metadata(catalog, write.uri),
        "delta_version": write.version,
        "sync_type": result.sync_type.value,
        "rows_synced": result.batch.num_rows,
        "rows_inserted": write.inserted,
        "rows_updated": write.updated,
        "rows_deleted": write.deleted,
        "rows_unchanged": write.unchanged,
        "preview": dg.MetadataValue.md(_markdown_preview(result.batch, PREVIEW_COLUMNS[stream])),
        **result.metadata,
    }


def _start_maintenance(pool: ThreadPoolExecutor, catalog: DeltaCatalog, result: StreamResult
                       ) -> dict[str, Future]:
    """Retention, checkpoint, vacuum after the commits, in the background: delta-rs releases the GIL, so the
    tables are maintained side by side and while Dagster records the other stream's events."""
    return {w.uri: pool.submit(catalog.maintain, w.uri) for w in (result.write, result.history) if w is not None}


def _maintenance_outcome(context: dg.AssetExecutionContext, futures: dict[str, Future]) -> dict[str, object]:
    """The data is already safe, so a failed maintenance warns (visibly, in the run log and metadata)
    instead of failing the sync; the next run retries it."""
    out: dict[str, object] = {}
    for uri, future in futures.items():
        exc = future.exception()
        if exc is not None:
            context.log.warning(f"Delta maintenance of {uri} failed and will be retried next run: {exc}")
            out["maintenance_error"] = str(exc)[:500]
    return out


def _history_metadata(result: StreamResult, catalog: DeltaCatalog) -> dict[str, object]:
    hist = result.history
    assert hist is not None
    return {
        **_table_metadata(catalog, hist.uri),
        "delta_version": hist.version,
        "snapshot_rows_written": hist.rows_written,
        "snapshot_rows_inserted": hist.inserted,
        "snapshot_rows_updated": hist.updated,
    }


def _specs(source: SourceSettings, stream: str, description: str, history_description: str) -> list[dg.AssetSpec]:
    common = {
        "group_name": source.name,
        "kinds": {"tiktok", "deltalake"},
        "owners": OWNERS,
        "tags": {"source": source.name, "stream": stream},
        "freshness_policy": freshness_policy(source),
    }
    sync_type = source.streams[stream].sync_type.value
    return [
        dg.AssetSpec(
            source.asset_key_path(stream),
            description=f"{description}\n\nSource `{source.name}`: {source.description}. Sync: {sync_type}.",
            metadata={"sync_type": sync_type},
            **common,
        ),
        dg.AssetSpec(source.asset_key_path(stream, "_history"), description=history_description, **common),
    ]


_DESCRIPTIONS = {
    "user_info": (
        "The authorized TikTok account: profile and lifetime counters, one row keyed by `open_id`.",
        "One row per account per day with the counters read that day (follower growth TikTok never "
        "returns as history).",
    ),
    "videos": (
        "Every public video of the account with its counters, keyed by `id` (19-digit string). "
        "INCREMENTAL merges new videos plus a look-back window of recent ones; FULL_TABLE mirrors the "
        "source, so deleted videos disappear.",
        "One row per video per day with the counters read that day (view curves).",
    ),
}
_KEYS = {"user_info": ("open_id", USER_COUNTERS), "videos": ("id", VIDEO_COUNTERS)}


def sync_op_name(source: SourceSettings) -> str:
    return f"{source.name}__sync"


@dataclass
class _StreamPart:
    """One stream's share of the run: which of its tables are selected, and what its sync produced."""

    stream: str
    table_key: dg.AssetKey
    history_key: dg.AssetKey
    write_table: bool
    write_history: bool
    result: StreamResult | None = None
    table_meta: dict[str, object] = field(default_factory=dict)
    history_meta: dict[str, object] = field(default_factory=dict)
    maintenance: dict[str, Future] = field(default_factory=dict)
    error: Exception | None = None


def _run_part(source: SourceSettings, part: _StreamPart, client: TikTokClient, catalog: DeltaCatalog,
              config: SyncConfig, context: dg.AssetExecutionContext, maintenance: ThreadPoolExecutor) -> None:
    """Sync and describe one stream, and start its tables' maintenance. An error is kept, not raised, so
    the other stream finishes and lands; the op reports it afterwards."""
    try:
        common = {"full_refresh": config.full_refresh, "run_id": context.run_id, "asset_key": part.table_key,
                  "write_table": part.write_table, "write_history": part.write_history}
        if part.stream == "user_info":
            result = sync_user_info(client, catalog, source, **common)
        else:
            refresh = config.refresh_all_counters
            if refresh is None:
                refresh = source.streams["videos"].refresh_all_counters
            result = sync_videos(client, catalog, source, refresh_all_counters=refresh, **common)
        if result.write is not None:
            part.table_meta = _metadata(result, catalog, part.stream)
        if result.history is not None:
            part.history_meta = _history_metadata(result, catalog)
        part.maintenance = _start_maintenance(maintenance, catalog, result)
        part.result = result
    except Exception as exc:  # noqa: BLE001 - reported by the op once every stream has finished
        part.error = exc


def _events(part: _StreamPart, api: dict[str, int], days_left: float | None, maintained: dict[str, object],
            checks_selected: frozenset[dg.AssetCheckKey] | set[dg.AssetCheckKey]) -> Iterator[object]:
    result = part.result
    assert result is not None
    checks = [c for c in result.checks if dg.AssetCheckKey(part.table_key, c.check_name) in checks_selected]
    if part.write_table:
        meta = {**part.table_meta, **api, **maintained}
        if days_left is not None:
            meta["refresh_token_days_left"] = round(days_left, 1)
        yield dg.MaterializeResult(asset_key=part.table_key, metadata=meta, check_results=checks)
    else:
        yield from checks
    if part.write_history:
        meta = dict(part.history_meta)
        if not part.write_table:
            meta.update({**api, **maintained})
        yield dg.MaterializeResult(asset_key=part.history_key, metadata=meta)


def _failure(failed: list[_StreamPart]) -> Exception:
    """One failed stream: its own error (class and message intact). Several: one Failure naming each."""
    first = failed[0].error
    assert first is not None
    if isinstance(first, BatchCheckFailed) and len(failed) == 1:
        return dg.Failure(str(first), allow_retries=False)
    if len(failed) == 1:
        return first
    text = "; ".join(f"stream '{p.stream}' failed: {type(p.error).__name__}: {p.error}" for p in failed)
    return dg.Failure(text)


def build_source_asset(source: SourceSettings) -> dg.AssetsDefinition:
    """All streams of a source in one subsettable multi-asset.

    One op, not one per stream: the streams call different endpoints with separate rate budgets, so they
    run side by side (user_info's request and writes overlap video paging), and a daily run pays Dagster's
    per-step cost once. Selecting a subset writes only the selected tables; a stream runs if either of its
    tables is selected."""
    ck, dk = client_key(source), catalog_key(source)
    streams = [s for s in STREAMS if s in source.streams]
    specs: list[dg.AssetSpec] = []
    check_specs: list[dg.AssetCheckSpec] = []
    keys: dict[str, tuple[dg.AssetKey, dg.AssetKey]] = {}
    for stream in streams:
        table_spec, history_spec = _specs(source, stream, *_DESCRIPTIONS[stream])
        key_column, counters = _KEYS[stream]
        specs += [table_spec, history_spec]
        check_specs += blocking_check_specs(table_spec.key, key_column, counters)
        keys[stream] = (table_spec.key, history_spec.key)

    @dg.multi_asset(name=sync_op_name(source), specs=specs, check_specs=check_specs, can_subset=True,
                    required_resource_keys={ck, dk}, pool=pool_name(source), op_tags={SOURCE_TAG: source.name})
    def _sync(context: dg.AssetExecutionContext, config: SyncConfig):  # noqa: ANN202
        client: TikTokClient = getattr(context.resources, ck)
        catalog: DeltaCatalog = getattr(context.resources, dk)
        selected = context.selected_asset_keys
        parts = [_StreamPart(s, t, h, t in selected, h in selected) for s, (t, h) in keys.items()
                 if t in selected or h in selected]
        maintenance = ThreadPoolExecutor(max_workers=2 * len(parts), thread_name_prefix="delta-maintenance")
        try:
            # the last part (videos, the long one) runs on this thread, the others beside it
            with ThreadPoolExecutor(max_workers=max(len(parts) - 1, 1)) as pool:
                for part in parts[:-1]:
                    pool.submit(_run_part, source, part, client, catalog, config, context, maintenance)
                _run_part(source, parts[-1], client, catalog, config, context, maintenance)
            yield from _report(context, client, parts)
        finally:
            maintenance.shutdown(wait=True)

    return _sync


def _report(context: dg.AssetExecutionContext, client: TikTokClient, parts: list[_StreamPart]
            ) -> Iterator[object]:
    """Materializations and check results of the streams that landed, then the failure of those that did
    not. Stream by stream, so a stream's maintenance can finish while Dagster records the one before."""
    stats, days_left = client.stats, client.refresh_token_days_left()
    checks_selected = context.selected_asset_check_keys
    failed = []
    for i, part in enumerate(parts):
        if part.error is None:
            api = _api_metadata(stats, part.stream, shared=i == 0)
            maintained = _maintenance_outcome(context, part.maintenance)
            yield from _events(part, api, days_left, maintained, checks_selected)
            continue
        failed.append(part)
        if isinstance(part.error, BatchCheckFailed):
            yield from (c for c in part.error.results
                        if dg.AssetCheckKey(part.table_key, c.check_name) in checks_selected)
    if failed:
        raise _failure(failed) from failed[0].error


def build_stream_assets(source: SourceSettings) -> list[dg.AssetsDefinition]:
    return [build_source_asset(source)]
