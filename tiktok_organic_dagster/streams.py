"""The two streams' fields, Arrow types and record conversion.

Columns are named exactly as the API fields. Ids stay strings (19 digits exceed 2^53), counters are int64,
``create_time`` (Unix seconds in the API) becomes a UTC timestamp. Fields the API adds later are kept as
extra columns (schema evolution) instead of being dropped; documented fields missing from a record are null.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

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


def _column(values: list[object], dtype: pa.DataType) -> pa.Array:
    if dtype == TS:
        secs = pa.array(values, type=pa.int64())
        return pc.multiply(secs, 1_000_000).cast(TS)
    return pa.array(values, type=dtype)


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


def records_to_table(
    records: Sequence[dict],
    fields: dict[str, pa.DataType],
    extra: dict[str, object] | None = None,
) -> pa.Table:
    """Columnar conversion (one pass per field) — several times faster than pa.Table.from_pylist."""
    known = set(fields)
    unknown: list[str] = []
    seen: set[str] = set()
    for rec in records:
        for k in rec:
            if k not in known and k not in seen:
                seen.add(k)
                unknown.append(k)
    arrays: dict[str, pa.Array] = {}
    for name, dtype in fields.items():
        arrays[name] = _column([r.get(name) for r in records], dtype)
    for name in unknown:
        if name.startswith("_") or name in (extra or {}):
            continue  # never let the API overwrite our bookkeeping columns
        arrays[name] = _infer([r.get(name) for r in records])
    for name, value in (extra or {}).items():
        dtype = BOOKKEEPING.get(name, pa.string())
        if isinstance(value, datetime):
            arrays[name] = pa.array([value] * len(records), type=TS)
        else:
            arrays[name] = pa.array([value] * len(records), type=dtype)
    return pa.table(arrays)


def concat(tables: Iterable[pa.Table]) -> pa.Table | None:
    """Concatenate page tables; a field that appears only in later pages becomes a null-filled column."""
    tables = list(tables)
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def history_rows(table: pa.Table, key: str, counters: Sequence[str], snapshot: datetime) -> pa.Table:
    """One row per key for today's snapshot: the counters read by this sync."""
    wanted = dict.fromkeys((key, "open_id", *counters, "_synced_at"))  # ordered, no duplicates
    cols = [c for c in wanted if c in table.column_names]
    out = table.select(cols)
    date = pa.array([snapshot.date()] * out.num_rows, type=pa.date32())
    return out.add_column(1, "snapshot_date", date)
