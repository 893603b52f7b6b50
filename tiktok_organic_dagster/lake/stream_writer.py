"""Streamed overwrite: Parquet written row group by row group, committed as one Delta transaction.

Why not ``write_deltalake(reader)``: delta-rs 1.6 drains the whole stream into memory before it writes
(+150 MB for 100k videos, whatever ``target_file_size`` says). Here each row group is encoded and flushed as
it arrives, so the peak is one row group, and the files become visible only with the commit that adds
them: a failure before it leaves the table as it was (the orphan files are removed by the next vacuum).

Remote tables (``s3://``, ``gs://``, ``az://``) are written through delta-rs's own object store
(``DeltaStorageHandler``), so they take the same storage options as every other write; local ones through
Arrow's local file system, which streams to disk. Each add action carries the statistics
delta-rs would write (row count, min/max, null counts), so readers keep skipping files and the catalog keeps
reading ``max(create_time)`` and row counts from the log alone.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake.fs import DeltaStorageHandler
from deltalake.transaction import AddAction

ROWS_PER_GROUP = 5_000  # ~5 MB of video rows in Arrow: the writer's working set, on top of the listing
# ~3 MB of Parquet for videos. Pages arrive newest first, so each file covers a create_time range: an
# incremental merge into the recent window rewrites only the newest file, not a 100k-video account.
ROWS_PER_FILE = 25_000
MAX_STRING_STAT = 64  # delta-rs truncates string minimums to 64 characters; longer maximums are omitted


def _stat_value(value: Any, is_max: bool) -> Any:
    """A min/max as Delta's JSON statistics spell it (timestamps in ms precision, rounded outward)."""
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc)
        ms = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if is_max and ms != value:
            ms += timedelta(milliseconds=1)
        fraction = f".{ms.microsecond // 1000:03d}" if ms.microsecond else ""  # as delta-rs spells it
        return ms.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _has_min_max(dtype: pa.DataType) -> bool:
    return (pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_timestamp(dtype)
            or pa.types.is_date(dtype) or pa.types.is_string(dtype) or pa.types.is_large_string(dtype))


class _FileStats:
    """Per-column statistics of one data file, folded batch by batch."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.rows = 0
        self.nulls: dict[str, int] = {}
        self.mins: dict[str, Any] = {}
        self.maxs: dict[str, Any] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for field, column in zip(self.schema, batch.columns, strict=True):
            if pa.types.is_nested(field.type):
                continue
            self.nulls[field.name] = self.nulls.get(field.name, 0) + column.null_count
            if not _has_min_max(field.type) or column.null_count == len(column):
                continue
            lo, hi = (v.as_py() for v in pc.min_max(column).values())
            name = field.name
            self.mins[name] = lo if name not in self.mins else min(self.mins[name], lo)
            self.maxs[name] = hi if name not in self.maxs else max(self.maxs[name], hi)

    def to_json(self) -> str:
        mins = {k: (v[:MAX_STRING_STAT] if isinstance(v, str) else _stat_value(v, False)) for k, v in self.mins.items()}
        # a truncated string maximum would be too low, so a long one is left out (no statistic is always safe)
        maxs = {k: _stat_value(v, True) for k, v in self.maxs.items()
                if not (isinstance(v, str) and len(v) > MAX_STRING_STAT)}
        return json.dumps({"numRecords": self.rows,
                           "minValues": {k: v for k, v in mins.items() if v is not None},
                           "maxValues": {k: v for k, v in maxs.items() if v is not None},
                           "nullCount": self.nulls}, separators=(",", ":"))


class _FileWriter:
    def __init__(self, fs: pafs.FileSystem, schema: pa.Schema, rows_per_group: int,
                 partition_values: dict[str, str], folder: str) -> None:
        self.rows_per_group = rows_per_group
        self.partition_values = partition_values
        name = f"part-{uuid.uuid4()}-c000.snappy.parquet"
        self.path = f"{folder}/{name}" if folder else name
        if folder:
            fs.create_dir(folder, recursive=True)
        self._stream = fs.open_output_stream(self.path)
        self._writer = pq.ParquetWriter(self._stream, schema, compression="snappy", write_statistics=True)
        self.stats = _FileStats(schema)

    def write(self, batches: list[pa.RecordBatch]) -> None:
        for batch in batches:
            self.stats.add(batch)
        self._writer.write_table(pa.Table.from_batches(batches), row_group_size=self.rows_per_group)

    def close(self) -> AddAction:
        self._writer.close()
        size = self._stream.tell()
        self._stream.close()
        return AddAction(self.path, size, dict(self.partition_values), time.time_ns() // 1_000_000, True,
                         self.stats.to_json())

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._stream.close()


def _filesystem(uri: str, storage_options: dict[str, str] | None) -> pafs.FileSystem:
    """delta-rs's handler keeps a whole file in memory until it closes (~10 MB per 100k videos): only object
    stores need that."""
    if "://" not in uri or uri.startswith("file://"):
        return pafs.SubTreeFileSystem(uri.removeprefix("file://"), pafs.LocalFileSystem())
    return pafs.PyFileSystem(DeltaStorageHandler(uri, storage_options))


def write_files(uri: str, storage_options: dict[str, str] | None, schema: pa.Schema,
                batches: Iterable[pa.RecordBatch], *, rows_per_group: int | None = None,
                rows_per_file: int | None = None, partition_values: dict[str, str] | None = None,
                folder: str = "") -> list[AddAction]:
    """Write ``batches`` (already of ``schema``) as Parquet files under ``uri``; return their add actions.

    Nothing is committed: the caller adds the actions to the table in one transaction. At least one file is
    written, so an empty source still records the schema.

    ``partition_values`` (one partition's ``{column: value}``): the files go under ``folder`` and, as Delta
    stores partition columns in the log, not in the files, those columns are left out of them."""
    rows_per_group, rows_per_file = rows_per_group or ROWS_PER_GROUP, rows_per_file or ROWS_PER_FILE
    values = dict(partition_values or {})
    if values:
        kept = [name for name in schema.names if name not in values]
        schema = pa.schema([schema.field(name) for name in kept])
        batches = (b.select(kept) for b in batches)
    fs = _filesystem(uri, storage_options)
    actions: list[AddAction] = []
    current: _FileWriter | None = None
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    try:
        for batch in batches:
            pending.append(batch)
            pending_rows += batch.num_rows
            if pending_rows < rows_per_group:
                continue
            current = current or _FileWriter(fs, schema, rows_per_group, values, folder)
            current.write(pending)
            pending, pending_rows = [], 0
            if current.stats.rows >= rows_per_file:
                actions.append(current.close())
                current = None
        if pending or current is None and not actions:
            current = current or _FileWriter(fs, schema, rows_per_group, values, folder)
            current.write(pending or [pa.RecordBatch.from_pylist([], schema=schema)])
        if current is not None:
            actions.append(current.close())
            current = None
    finally:
        if current is not None:
            current.abort()
    return actions
