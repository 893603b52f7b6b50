"""The two streams' fields, Arrow types and record conversion.

Columns are named exactly as the API fields. Ids stay strings (19 digits exceed 2^53), counters are int64,
``create_time`` (Unix seconds in the API) becomes a UTC timestamp. Fields the API adds later are kept as
extra columns (schema evolution) instead of being dropped; documented fields missing from a record are null.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import pandas  # noqa: F401  (see below)
import pyarrow as pa
import pyarrow.compute as pc

# pyarrow imports pandas (~0.3 s, ~45 MB) the first time any Python value is converted (``pa.array``,
# ``pa.scalar``), which every sync does. Importing it here makes that cost part of loading the code location,
# where it is visible, instead of a surprise inside the first step's timing.

TS = pa.timestamp("us", tz="UTC")

USER_FIELDS: dict[str, pa.DataType] = {
    "open_id": pa.string(),
    "union_id": pa.string(),
    "avatar_url": pa.string(),
    "avatar_url_100": pa.string(),
    "avatar_large_url": pa.string(),
    "display_name": pa.string(),
    "bio_description": pa.string(),
    "profile_deep_link": pa.string(),
    "is_verified": pa.bool_(),
    "username": pa.string(),
    "follower_count": pa.int64(),
    "following_count": pa.int64(),
    "likes_count": pa.int64(),
    "video_count": pa.int64(),
}
USER_COUNTERS = ("follower_count", "following_count", "likes_count", "video_count")

VIDEO_FIELDS: dict[str, pa.DataType] = {
    "id": pa.string(),
    "create_time": TS,
    "title": pa.string(),
    "video_description": pa.string(),
    "duration": pa.int64(),
    "height": pa.int64(),
    "width": pa.int64(),
    "cover_image_url": pa.string(),
    "share_url": pa.string(),
    "embed_html": pa.string(),
    "embed_link": pa.string(),
    "like_count": pa.int64(),
    "comment_count": pa.int64(),
    "share_count": pa.int64(),
    "view_count": pa.int64(),
}
VIDEO_COUNTERS = ("like_count", "comment_count", "share_count", "view_count")
# Fields asked from video/query when refreshing counters of known videos (cheap, no signed URLs).
VIDEO_COUNTER_FIELDS = ("id", *VIDEO_COUNTERS)

# Which OAuth scope each requested field needs, so a scope error can name what the stream lacks.
SCOPE_OF_FIELD: dict[str, str] = {
    **{f: "user.info.basic" for f in ("open_id", "union_id", "avatar_url", "avatar_url_100",
                                      "avatar_large_url", "display_name")},
    **{f: "user.info.profile" for f in ("bio_description", "profile_deep_link", "is_verified", "username")},
    **{f: "user.info.stats" for f in USER_COUNTERS},
    **{f: "video.list" for f in VIDEO_FIELDS},
}

BOOKKEEPING: dict[str, pa.DataType] = {"open_id": pa.string(), "_synced_at": TS, "_last_seen_at": TS}
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd", use_threads=False)


def _infer(values: list[object]) -> pa.Array:
    """Unknown new fields: keep scalars typed as Arrow infers them, nested values as JSON text."""
    if any(isinstance(v, (dict, list)) for v in values):
        return pa.array([None if v is None else json.dumps(v, sort_keys=True) for v in values], pa.string())
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    if pa.types.is_null(arr.type):
        return arr.cast(pa.string())
    return arr


def _wire_type(dtype: pa.DataType) -> pa.DataType:
    return pa.int64() if dtype == TS else dtype  # the API sends create_time as Unix seconds


class ApiFieldError(ValueError):
    """The API answered a value of the wrong type for a documented field: name it instead of a bare Arrow error."""


def _bad_field(records: Sequence[dict], fields: dict[str, pa.DataType]) -> ApiFieldError:
    for name, dtype in fields.items():
        for rec in records:
            value = rec.get(name)
            try:
                pa.array([value], type=_wire_type(dtype))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                ident = rec.get("id") or rec.get("open_id") or "?"
                return ApiFieldError(
                    f"TikTok returned {type(value).__name__} {str(value)[:40]!r} for field '{name}' of record "
                    f"{ident} (expected {dtype}); nothing was written. If TikTok changed this field's type, "
                    "report it — the table schema would have to change with it."
                )
    return ApiFieldError("TikTok returned a record that does not fit the documented field types")


def records_to_table(
    records: Sequence[dict],
    fields: dict[str, pa.DataType],
    extra: dict[str, object] | None = None,
) -> pa.Table:
    """Columnar conversion: the documented fields in one C++ pass (a struct array built from the dicts),
    unknown keys only looked at when a record has any. About 2x faster than one list per field and
    several times faster than ``pa.Table.from_pylist``."""
    known = set(fields)
    unknown: list[str] = []
    if not all(rec.keys() <= known for rec in records):  # dict-view subset test runs in C
        seen: set[str] = set()
        for rec in records:
            for k in rec:
                if k not in known and k not in seen:
                    seen.add(k)
                    unknown.append(k)
    wire = pa.struct([(name, _wire_type(dtype)) for name, dtype in fields.items()])
    try:
        parsed = pa.Table.from_struct_array(pa.array(records, type=wire))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise _bad_field(records, fields) from exc
    arrays: dict[str, pa.Array | pa.ChunkedArray] = {}
    for name, dtype in fields.items():
        column = parsed.column(name)
        arrays[name] = pc.multiply(column, 1_000_000).cast(TS) if dtype == TS else column
    for name in unknown:
        if name.startswith("_") or name in (extra or {}):
            continue  # never let the API overwrite our bookkeeping columns
        arrays[name] = _infer([r.get(name) for r in records])
    n = len(records)
    for name, value in (extra or {}).items():
        dtype = TS if isinstance(value, datetime) else BOOKKEEPING.get(name, pa.string())
        arrays[name] = pa.repeat(pa.scalar(value, type=dtype), n)
    return pa.table(arrays)


def concat(tables: Iterable[pa.Table]) -> pa.Table | None:
    """Concatenate page tables; a field that appears only in later pages becomes a null-filled column."""
    tables = list(tables)
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


class ChunkBuffer:
    """A listing held compactly until its commit: records -> Arrow chunks -> zstd-compressed IPC buffers.

    Why: a full sync must finish paging before it writes (an API failure then leaves the tables
    untouched), yet 100k videos are ~90 MB as Arrow (~175 MB as Python dicts). Each chunk of ``chunk_rows``
    records is converted and compressed at once (~8 MB per 100k videos; LZ4 was twice that), and only the
    narrow ``summary`` columns (key, counters, bookkeeping, preview) stay uncompressed for checks, history and
    metadata.
    ``reader()`` streams the chunks back for the write and can be called again (a commit retry replays it).
    Chunks may differ in schema (a new API field); ``schema`` unifies them, missing columns become null.
    """

    def __init__(self, fields: dict[str, pa.DataType], extra: dict[str, object], summary: Sequence[str],
                 chunk_rows: int = 2000) -> None:
        self.fields, self.extra, self.chunk_rows = fields, extra, chunk_rows
        self._summary_columns = tuple(summary)
        self._pending: list[dict] = []
        self._chunks: list[pa.Buffer] = []
        self._schemas: list[pa.Schema] = []
        self._summaries: list[pa.Table] = []
        self.rows = 0

    def extend(self, records: Iterable[dict]) -> None:
        self._pending.extend(records)
        if len(self._pending) >= self.chunk_rows:
            self._flush()

    def finish(self) -> None:
        """Convert what is pending (an empty listing still yields one empty chunk, for its schema)."""
        if self._pending or not self._chunks:
            self._flush()

    def _flush(self) -> None:
        table = records_to_table(self._pending, self.fields, self.extra)
        self._pending = []
        self.rows += table.num_rows
        self._schemas.append(table.schema)
        self._summaries.append(table.select([c for c in self._summary_columns if c in table.column_names]))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
            writer.write_table(table)
        self._chunks.append(sink.getvalue())

    @property
    def schema(self) -> pa.Schema:
        return pa.unify_schemas(self._schemas, promote_options="permissive")

    def summary(self) -> pa.Table:
        """The summary columns of every row (what checks, history rows and metadata read)."""
        out = concat(self._summaries)
        assert out is not None, "finish() first"
        self._summaries = [out]  # the pieces are not kept beside their concatenation (it may copy)
        return out

    def batches(self, schema: pa.Schema | None = None) -> Iterator[pa.RecordBatch]:
        schema = schema or self.schema
        for chunk in self._chunks:
            table = pa.ipc.open_stream(chunk).read_all()
            if not table.schema.equals(schema):
                columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
                           else pa.nulls(table.num_rows, f.type) for f in schema]
                table = pa.Table.from_arrays(columns, schema=schema)
            yield from table.to_batches()

    def reader(self) -> pa.RecordBatchReader:
        schema = self.schema
        return pa.RecordBatchReader.from_batches(schema, self.batches(schema))

    def table(self) -> pa.Table:
        schema = self.schema
        return pa.Table.from_batches(list(self.batches(schema)), schema=schema)


def history_rows(table: pa.Table, key: str, counters: Sequence[str], snapshot: datetime) -> pa.Table:
    """One row per key for today's snapshot: the counters read by this sync."""
    wanted = dict.fromkeys((key, "open_id", *counters, "_synced_at"))  # ordered, no duplicates
    cols = [c for c in wanted if c in table.column_names]
    out = table.select(cols)
    date = pa.array([snapshot.date()] * out.num_rows, type=pa.date32())
    return out.add_column(1, "snapshot_date", date)
