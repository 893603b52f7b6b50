"""The Dagster assets of one source: ``user_info`` and ``videos`` with their daily history tables.

Each stream is one multi-asset (the table and its history come from the same API reads, so the history
costs no extra request). Asset keys are the table's place in the catalog: ``[layer, folder, table]``.
"""

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
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
from tiktok_organic_dagster.tiktok_client import TikTokClient

OWNERS = ["team:data-engineering"]
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


def _stats(client: TikTokClient) -> dict[str, int]:
    s = client.stats
    return {"requests": s.total_requests, "pages": s.pages, "retries": s.retries, "rate_limited": s.rate_limited,
            "refreshes": s.refreshes}


def _column_schema(catalog: DeltaCatalog, uri: str) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in catalog.schema(uri)])


def _metadata(
    result: StreamResult, catalog: DeltaCatalog, stream: str, before: Mapping[str, int], after: Mapping[str, int],
    days_left: float | None,
) -> dict[str, object]:
    write = result.write
    meta: dict[str, object] = {
        "dagster/row_count": catalog.row_count(write.uri),
        "dagster/column_schema": _column_schema(catalog, write.uri),
        "dagster/uri": dg.MetadataValue.path(write.uri),
        "delta_version": write.version,
        "sync_type": result.sync_type.value,
        "rows_synced": result.batch.num_rows,
        "rows_inserted": write.inserted,
        "rows_updated": write.updated,
        "rows_deleted": write.deleted,
        "rows_unchanged": write.unchanged,
        "api_requests": after["requests"] - before["requests"],
        "api_pages": after["pages"] - before["pages"],
        "api_retries": after["retries"] - before["retries"],
        "api_429s": after["rate_limited"] - before["rate_limited"],
        "token_refreshes": after["refreshes"] - before["refreshes"],
        "preview": dg.MetadataValue.md(_markdown_preview(result.batch, PREVIEW_COLUMNS[stream])),
        **result.metadata,
    }
    if days_left is not None:
        meta["refresh_token_days_left"] = round(days_left, 1)
    return meta


def _maintain(context: dg.AssetExecutionContext, catalog: DeltaCatalog, result: StreamResult) -> dict[str, object]:
    """Retention, checkpoint, vacuum after the commits. The data is already safe, so a failure here warns
    (visibly, in the run log and metadata) instead of failing the sync; the next run retries it.

    The stream's two tables are independent and delta-rs releases the GIL, so they are maintained in
    parallel: maintenance is fixed per-run cost that a daily incremental would otherwise pay twice."""
    out: dict[str, object] = {}
    uris = [w.uri for w in (result.write, result.history) if w is not None]
    with ThreadPoolExecutor(max_workers=len(uris) or 1) as pool:
        futures = {uri: pool.submit(catalog.maintain, uri) for uri in uris}
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
        "dagster/row_count": catalog.row_count(hist.uri),
        "dagster/column_schema": _column_schema(catalog, hist.uri),
        "dagster/uri": dg.MetadataValue.path(hist.uri),
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


def _run_stream(
    source: SourceSettings, stream: str, client: TikTokClient, catalog: DeltaCatalog, config: SyncConfig,
    run_id: str, asset_key: dg.AssetKey,
) -> StreamResult:
    if stream == "user_info":
        return sync_user_info(client, catalog, source, full_refresh=config.full_refresh, run_id=run_id,
                              asset_key=asset_key)
    refresh = config.refresh_all_counters
    if refresh is None:
        refresh = source.streams["videos"].refresh_all_counters
    return sync_videos(client, catalog, source, full_refresh=config.full_refresh, refresh_all_counters=refresh,
                       run_id=run_id, asset_key=asset_key)


def _stream_asset(source: SourceSettings, stream: str) -> dg.AssetsDefinition:
    ck, dk = client_key(source), catalog_key(source)
    specs = _specs(source, stream, *_DESCRIPTIONS[stream])
    table_key, history_key = specs[0].key, specs[1].key
    key_column, counters = _KEYS[stream]

    @dg.multi_asset(name=f"{source.name}__{stream}", specs=specs, required_resource_keys={ck, dk},
                    check_specs=blocking_check_specs(table_key, key_column, counters),
                    pool=pool_name(source), op_tags={SOURCE_TAG: source.name})
    def _sync(context: dg.AssetExecutionContext, config: SyncConfig):  # noqa: ANN202
        client: TikTokClient = getattr(context.resources, ck)
        catalog: DeltaCatalog = getattr(context.resources, dk)
        before = _stats(client)
        try:
            result = _run_stream(source, stream, client, catalog, config, context.run_id, table_key)
        except BatchCheckFailed as exc:
            yield from exc.results
            raise dg.Failure(str(exc), allow_retries=False) from None
        meta = _metadata(result, catalog, stream, before, _stats(client), client.refresh_token_days_left())
        meta.update(_maintain(context, catalog, result))
        yield dg.MaterializeResult(asset_key=table_key, metadata=meta, check_results=result.checks)
        yield dg.MaterializeResult(asset_key=history_key, metadata=_history_metadata(result, catalog))

    return _sync


def build_stream_assets(source: SourceSettings) -> list[dg.AssetsDefinition]:
    return [_stream_asset(source, stream) for stream in ("user_info", "videos") if stream in source.streams]
