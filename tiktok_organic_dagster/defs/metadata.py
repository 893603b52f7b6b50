"""Materialization metadata: Dagster's standard table keys, the sync's counts, API usage and a preview.

Dagster 1.13 keeps ``TableMetadataSet`` private (``dagster._core``), so the standard keys it would write are
spelled once here; the schema and the preview use the public ``TableSchema`` / ``MetadataValue.table``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from datetime import date, datetime
from typing import Any

import dagster as dg
import pyarrow as pa

from tiktok_organic_dagster.lake import DeltaCatalog
from tiktok_organic_dagster.names import ACCOUNT_COLUMN
from tiktok_organic_dagster.sync import StreamResult
from tiktok_organic_dagster.tiktok import ClientStats
from tiktok_organic_dagster.tiktok.streams import STREAMS

ROW_COUNT, COLUMN_SCHEMA, URI = "dagster/row_count", "dagster/column_schema", "dagster/uri"
PARTITION_ROW_COUNT = "dagster/partition_row_count"
PREVIEW_ROWS = 5


def _cell(value: object) -> str | int | float | bool | None:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def preview(table: pa.Table, columns: Sequence[str], rows: int = PREVIEW_ROWS) -> dg.TableMetadataValue:
    cols = [c for c in columns if c in table.column_names]
    head = table.select(cols).slice(0, rows)
    schema = dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in head.schema])
    records = [dg.TableRecord({c: _cell(v) for c, v in rec.items()}) for rec in head.to_pylist()]
    return dg.MetadataValue.table(records=records, schema=schema)


def api_metadata(stats: ClientStats, stream: str, shared: bool) -> dict[str, int]:
    """This stream's requests out of the client's run totals (the streams of a run share one client); the
    token refresh both need is counted once, on the run's first stream."""
    endpoints = (*STREAMS[stream].endpoints, *(("oauth_token",) if shared else ()))
    return {
        "api_requests": sum(stats.requests.get(e, 0) for e in endpoints),
        "api_pages": stats.pages if "video_list" in STREAMS[stream].endpoints else 0,
        "api_retries": sum(stats.retries_by_endpoint.get(e, 0) for e in endpoints),
        "api_429s": sum(stats.rate_limited_by_endpoint.get(e, 0) for e in endpoints),
        "token_refreshes": stats.refreshes if shared else 0,
    }


def table_metadata(catalog: DeltaCatalog, uri: str, account: str | None = None) -> dict[str, Any]:
    """``account``: a multi-account source's table; the partition's own row count beside the table's."""
    rows, schema = catalog.describe(uri)
    meta: dict[str, Any] = {
        ROW_COUNT: rows,
        COLUMN_SCHEMA: dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in schema]),
        URI: dg.MetadataValue.path(uri),
    }
    if account is not None:
        meta[PARTITION_ROW_COUNT] = catalog.row_count(uri, partition=(ACCOUNT_COLUMN, account))
        meta["account"] = account
    return meta


def stream_metadata(result: StreamResult, catalog: DeltaCatalog, stream: str, account: str | None = None
                    ) -> dict[str, Any]:
    write = result.write
    assert write is not None
    return {
        **table_metadata(catalog, write.uri, account),
        "delta_version": write.version,
        "sync_type": result.sync_type.value,
        "rows_synced": result.batch.num_rows,
        "rows_inserted": write.inserted,
        "rows_updated": write.updated,
        "rows_deleted": write.deleted,
        "rows_unchanged": write.unchanged,
        "preview": preview(result.batch, STREAMS[stream].preview_columns),
        **result.metadata,
    }


def history_metadata(result: StreamResult, catalog: DeltaCatalog, account: str | None = None) -> dict[str, Any]:
    hist = result.history
    assert hist is not None
    return {
        **table_metadata(catalog, hist.uri, account),
        "delta_version": hist.version,
        "snapshot_rows_written": hist.rows_written,
        "snapshot_rows_inserted": hist.inserted,
        "snapshot_rows_updated": hist.updated,
    }


def maintenance_outcome(log: dg.DagsterLogManager, futures: dict[str, Future]) -> dict[str, Any]:
    """The data is already safe, so a failed maintenance warns (visibly, in the run log and metadata)
    instead of failing the sync; the next run retries it."""
    out: dict[str, Any] = {}
    for uri, future in futures.items():
        exc = future.exception()
        if exc is not None:
            log.warning(f"Delta maintenance of {uri} failed and will be retried next run: {exc}")
            out["maintenance_error"] = str(exc)[:500]
    return out
