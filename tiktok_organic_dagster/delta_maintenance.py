"""Helpers of :mod:`tiktok_organic_dagster.delta_catalog`: retention, maintenance, history, Arrow prep.

Kept apart from the catalog so each file reads in one sitting; nothing here knows about config or
storage credentials. Works the same on local disk, S3, GCS and ADLS.

Why the maintenance order is ``compact -> vacuum(full) -> checkpoint -> cleanup_metadata``:

* ``vacuum`` in *lite* mode only sees files named by remove tombstones still in the snapshot; a
  checkpoint written after a tombstone expired drops it, orphaning the file forever. ``full=True``
  costs the same single listing (lite lists the whole table too) and also finds those files and the
  leftovers of failed writes. In deltalake 1.6 a full vacuum still only deletes (a) files whose
  tombstone is older than ``delta.deletedFileRetentionDuration`` and (b) unreferenced files whose
  object mtime is older than it — so in-flight writes of concurrent writers and files of versions
  inside the retention window are safe (checked by experiment and by this module's tests).
* ``cleanup_metadata`` only deletes commit files older than ``delta.logRetentionDuration`` *and*
  older than the newest checkpoint at or below the oldest in-retention version, so it needs a
  checkpoint first; we write one every ``checkpoint_every`` commits instead of on every call.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.fs import DeltaStorageHandler

META_PREFIX = "tiktok_organic."
META_SYNC_TYPE = "tiktok_organic.sync_type"
META_RUN_ID = "tiktok_organic.run_id"
META_OPERATION = "tiktok_organic.operation"
COUNT_FIELDS = ("rows_written", "inserted", "updated", "deleted", "unchanged")

LOG_RETENTION_PROP = "delta.logRetentionDuration"
FILE_RETENTION_PROP = "delta.deletedFileRetentionDuration"

# delta-rs silently ignores malformed intervals (e.g. "30 days") and falls back to its defaults, so every
# value we write or trust is checked against the grammar it actually parses.
_INTERVAL_RE = re.compile(
    r"^interval (\d+) (nanosecond|microsecond|millisecond|second|minute|hour|day|week)s?$"
)
_UNIT_SECONDS = {
    "nanosecond": 1e-9, "microsecond": 1e-6, "millisecond": 1e-3, "second": 1.0,
    "minute": 60.0, "hour": 3600.0, "day": 86400.0, "week": 604800.0,
}

_log = dg.get_dagster_logger("tiktok_organic.delta_catalog")
Counts = tuple[int | None, int | None, int | None]


class DeltaCatalogError(Exception):
    """Base class for catalog errors (configuration, names, data, commits, time travel)."""


class CatalogConfigError(DeltaCatalogError, ValueError):
    """A setting or name is invalid; the message names the setting."""


class CommitConflictError(DeltaCatalogError):
    """Concurrent writers kept winning the commit race until the retry bound."""


class VersionNotAvailableError(DeltaCatalogError):
    """The requested version/time is outside retention (log or data files already removed)."""


def interval_seconds(value: str) -> float:
    """Seconds in a Delta ``interval N unit`` string; ValueError when delta-rs would ignore it."""
    match = _INTERVAL_RE.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(
            f"retention interval {value!r} is malformed: use 'interval <N> <unit>' with unit "
            "second|minute|hour|day|week (delta-rs silently ignores anything else)"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def retention_properties(days: int) -> dict[str, str]:
    """Table properties that make logs *and* removed data files live exactly ``days`` days."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"delta_log_retention_days must be an integer >= 1, got {days!r}")
    value = f"interval {days} days"
    interval_seconds(value)  # guard the format we write
    return {LOG_RETENTION_PROP: value, FILE_RETENTION_PROP: value}


def ensure_retention(dt: DeltaTable, days: int, commit_properties: CommitProperties) -> bool:
    """Set the retention properties on an existing table only when they differ (a commit each time)."""
    wanted = retention_properties(days)
    current = dt.metadata().configuration or {}
    if all(current.get(k) == v for k, v in wanted.items()):
        return False
    _log.info(f"setting retention on {dt.table_uri}: {wanted} (was {current})")
    dt.alter.set_table_properties(wanted, commit_properties=commit_properties)
    return True


def last_checkpoint_version(uri: str, storage_options: dict[str, str] | None) -> int | None:
    """Version of the newest checkpoint, read from ``_delta_log/_last_checkpoint`` on any store."""
    fs = pafs.PyFileSystem(DeltaStorageHandler(uri, storage_options))
    try:
        with fs.open_input_stream("_delta_log/_last_checkpoint") as stream:
            return int(json.loads(stream.read())["version"])
    except (FileNotFoundError, OSError, KeyError, ValueError):
        return None


def commit_time(entry: dict[str, Any]) -> datetime:
    """UTC datetime of a raw ``DeltaTable.history()`` entry (delta stores epoch milliseconds)."""
    return datetime.fromtimestamp(int(entry["timestamp"]) / 1000.0, tz=timezone.utc)


def normalize_history_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """Flatten a raw history entry: our commit metadata plus counts (ours, else delta's metrics)."""
    metrics = entry.get("operationMetrics") or {}
    out: dict[str, Any] = {
        "version": entry.get("version"),
        "timestamp": commit_time(entry),
        "operation": entry.get("operation"),
        "sync_type": entry.get(META_SYNC_TYPE),
        "run_id": entry.get(META_RUN_ID),
        "metadata": {k: v for k, v in entry.items() if k.startswith(META_PREFIX)},
        "operation_metrics": metrics,
    }
    for name in COUNT_FIELDS:
        out[name] = entry.get(META_PREFIX + name)
    if entry.get("operation") == "MERGE":  # merge counts are only known after the commit
        out["inserted"] = metrics.get("num_target_rows_inserted", out["inserted"])
        out["updated"] = metrics.get("num_target_rows_updated", out["updated"])
        out["deleted"] = metrics.get("num_target_rows_deleted", out["deleted"])
        if out["rows_written"] is not None and out["inserted"] is not None and out["updated"] is not None:
            out["unchanged"] = int(out["rows_written"]) - int(out["inserted"]) - int(out["updated"])
    elif out["rows_written"] is None and "num_added_rows" in metrics:
        out["rows_written"] = metrics["num_added_rows"]
    return out


def iter_history(dt: DeltaTable) -> Iterator[dict[str, Any]]:
    """Raw history newest first, fetched in growing pages so "find the newest X" stays cheap."""
    seen: set[int] = set()
    for limit in (25, 250, None):
        entries = dt.history(limit)
        fresh = [e for e in entries if int(e.get("version", -1)) >= 0 and e["version"] not in seen]
        yield from fresh
        seen.update(e["version"] for e in fresh)
        if limit is None or len(entries) < limit:
            return


def maintain_table(
    open_table: Callable[[], DeltaTable],
    *,
    uri: str,
    storage_options: dict[str, str] | None,
    retention_days: int,
    commit_properties: CommitProperties,
    checkpoint_every: int,
    compact_min_small_files: int,
    small_file_bytes: int,
) -> dict[str, Any]:
    """Retention properties, compaction of small files, full vacuum, checkpoint, expired-log cleanup.

    Best effort against concurrent writers: a maintenance commit that loses a race is logged and
    skipped (the next run picks it up); data writes are never blocked by it.
    """
    started = time.monotonic()
    report: dict[str, Any] = {"uri": uri}
    dt = open_table()
    report["retention_updated"] = _best_effort(
        "set retention", lambda: ensure_retention(dt, retention_days, commit_properties), False
    )
    report["retention"] = retention_properties(retention_days)

    files = pa.table(dt.get_add_actions(flatten=False)).select(["path", "size_bytes"])
    sizes = files.column("size_bytes").to_pylist()
    small = sum(1 for s in sizes if s < small_file_bytes)
    report["files_before"] = len(sizes)
    report["compacted"] = None
    if small >= compact_min_small_files:
        dt = open_table()
        report["compacted"] = _best_effort(
            "compact", lambda: _compact(dt, commit_properties), None
        )

    dt = open_table()
    deleted = _best_effort("vacuum", lambda: dt.vacuum(dry_run=False, full=True, enforce_retention_duration=True,
                                                       commit_properties=commit_properties), [])
    report["vacuumed_files"] = len(deleted)

    dt = open_table()
    version = dt.version()
    last_cp = last_checkpoint_version(uri, storage_options)
    report["checkpoint_version"] = None
    if last_cp is None or version - last_cp >= checkpoint_every or report["compacted"]:
        dt.create_checkpoint()
        report["checkpoint_version"] = version
    dt.cleanup_metadata()
    report["version"] = version
    report["files_after"] = len(dt.file_uris())
    report["duration_s"] = round(time.monotonic() - started, 4)
    return report


def _compact(dt: DeltaTable, commit_properties: CommitProperties) -> dict[str, int]:
    metrics = dt.optimize.compact(commit_properties=commit_properties)
    return {"files_added": int(metrics.get("numFilesAdded", 0)),
            "files_removed": int(metrics.get("numFilesRemoved", 0))}


def _best_effort(what: str, fn: Callable[[], Any], fallback: Any) -> Any:
    try:
        return fn()
    except CommitFailedError as exc:
        _log.warning(f"maintenance step '{what}' lost a commit race, skipped until next run: {exc}")
        return fallback


# ------------------------------------------------------------- Arrow preparation of the data to write
def _norm_type(t: pa.DataType, path: str) -> pa.DataType:
    if pa.types.is_timestamp(t):
        if t.tz is None:
            raise CatalogConfigError(
                f"column '{path}' holds naive timestamps (no time zone): convert to UTC first "
                "(e.g. pd.to_datetime(..., utc=True)); naive values would create a timestampNtz column"
            )
        return pa.timestamp("us", tz="UTC")
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_norm_type(f.type, f"{path}.{f.name}")) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return type(t)(t.value_field.with_type(_norm_type(t.value_type, f"{path}[]")))
    return t


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    """Timestamps -> timestamp[us, UTC] (naive rejected); column names must be quotable in SQL."""
    for name in schema.names:
        if not name or "`" in name:
            raise CatalogConfigError(f"column name {name!r} is empty or contains a backtick")
    if len(set(schema.names)) != len(schema.names):
        raise CatalogConfigError(f"duplicate column names in {schema.names}")
    return pa.schema([f.with_type(_norm_type(f.type, f.name)) for f in schema])


def cast_to(data: pa.Table | pa.RecordBatch, schema: pa.Schema) -> Any:
    return data if data.schema.equals(schema) else data.cast(schema, safe=False)


def check_keys(schema: pa.Schema, key: list[str], setting: str) -> list[str]:
    missing = [k for k in key if k not in schema.names]
    if missing:
        raise CatalogConfigError(f"{setting} column(s) {missing} are not in the data columns {schema.names}")
    return list(dict.fromkeys(key))


def reject_null_keys(data: pa.Table | pa.RecordBatch, keys: list[str]) -> None:
    for k in keys:
        if data.column(k).null_count:
            raise DeltaCatalogError(f"key column '{k}' contains nulls; every row needs a key")


def dedupe_last(table: pa.Table, keys: list[str]) -> pa.Table:
    """Keep the last row per key (source order), so MERGE never sees duplicate source keys."""
    idx = pa.array(range(table.num_rows), pa.int64())
    last = table.select(keys).append_column("__row", idx).group_by(keys, use_threads=False).aggregate(
        [("__row", "max")])
    if last.num_rows == table.num_rows:
        return table
    rows = last.column("__row_max")
    return table.take(pc.take(rows, pc.array_sort_indices(rows)))


def key_strings(data: pa.Table | pa.RecordBatch, keys: list[str]) -> pa.Array:
    parts = [pc.cast(data.column(k), pa.string()) for k in keys]
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "\x1f")
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def unique_keys(chunks: list[Any], keys: list[str]) -> pa.Array:
    arrays = [c if isinstance(c, pa.Array) else key_strings(c, keys) for c in chunks]
    return pc.unique(pa.concat_arrays(arrays) if arrays else pa.array([], pa.string()))


def previous_keys(dt: DeltaTable | None, keys: list[str]) -> pa.Array | None:
    if dt is None or not keys:
        return None
    if any(k not in {f.name for f in dt.schema().fields} for k in keys):
        return None
    prev = dt.to_pyarrow_dataset().to_table(columns=keys, use_threads=False)
    return unique_keys([prev], keys)


def key_diff(before: pa.Array | None, after: pa.Array | None, is_new: bool, rows: int) -> Counts:
    """(inserted, updated, deleted) of an overwrite: keys new / kept / gone; None when unknowable."""
    if is_new:
        return (len(after) if after is not None else rows), 0, 0
    if before is None or after is None:
        return None, None, None
    kept = _count_true(pc.is_in(after, value_set=before))
    remaining = _count_true(pc.is_in(before, value_set=after))
    return len(after) - kept, kept, len(before) - remaining


def _count_true(mask: pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)


def count_metadata(rows: int, inserted: int | None, updated: int | None, deleted: int | None
                   ) -> dict[str, int]:
    counts = {"rows_written": rows, "inserted": inserted, "updated": updated, "deleted": deleted,
              "unchanged": 0 if inserted is not None else None}
    return {META_PREFIX + k: v for k, v in counts.items() if v is not None}


def change_predicate(columns: list[str], keys: list[str], target: set[str]) -> str | None:
    """Null-safe "some payload column differs"; '' means nothing to compare (never update)."""
    compared = [c for c in columns if c not in keys and not c.startswith("_")]
    parts = [f"(t.`{c}` IS DISTINCT FROM s.`{c}`)" if c in target else f"(s.`{c}` IS NOT NULL)"
             for c in compared]
    return " OR ".join(parts)


class KeyTap:
    """Passes a reader's batches through (cast to the target schema) while recording keys and errors."""

    def __init__(self, reader: pa.RecordBatchReader, schema: pa.Schema, keys: list[str]) -> None:
        self.reader, self.schema, self.keys = reader, schema, keys
        self.key_chunks: list[pa.Array] = []
        self.rows = 0
        self.error: BaseException | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        try:
            for batch in self.reader:
                batch = cast_to(batch, self.schema)
                if self.keys:
                    reject_null_keys(batch, self.keys)
                    self.key_chunks.append(key_strings(batch, self.keys))
                self.rows += batch.num_rows
                yield batch
        except Exception as exc:
            self.error = exc
            raise
