"""Arrow preparation of data before a write: types Delta stores exactly, key checks, de-duplication, the
key diff an overwrite reports (a merge's matching is in ``match``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from tiktok_organic_dagster.lake.errors import CatalogConfigError, DeltaCatalogError

Counts = tuple[int | None, int | None, int | None]


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
    if pa.types.is_list(t) or pa.types.is_large_list(t):  # (list types have no constructor of their own)
        make = pa.large_list if pa.types.is_large_list(t) else pa.list_
        return make(t.value_field.with_type(_norm_type(t.value_type, f"{path}[]")))
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


def conform(schema: pa.Schema, stored: pa.Schema | None) -> pa.Schema:
    """The data's columns with the stored types where the table has them: a write into one partition must
    not retype the columns the other partitions share. New columns keep their own type."""
    if stored is None:
        return schema
    return pa.schema([f.with_type(stored.field(f.name).type) if f.name in stored.names else f for f in schema])


def stored_schema(dt: DeltaTable | None) -> pa.Schema | None:
    return pa.schema(dt.schema().to_arrow()) if dt is not None else None


def conform_rows(table: pa.Table, stored: pa.Schema | None) -> pa.Table:
    """``table`` cast to ``conform(table.schema, stored)``; a column that cannot take the stored type is
    named."""
    target = conform(table.schema, stored)
    try:
        return cast_to(table, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        differ = [f"{f.name} ({f.type} -> {target.field(f.name).type})" for f in table.schema
                  if not f.type.equals(target.field(f.name).type)]
        raise CatalogConfigError(f"the data cannot take the table's column types: {', '.join(differ)}: "
                                 f"{str(exc).splitlines()[0]}") from None


def merged_schema(stored: pa.Schema | None, written: pa.Schema) -> pa.Schema:
    """The table's columns (other partitions keep theirs) followed by the columns the write adds."""
    if stored is None:
        return written
    return pa.schema([*stored, *(f for f in written if f.name not in stored.names)])


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


def previous_keys(dt: DeltaTable | None, keys: list[str],
                  files: list[tuple[str, str, str]] | None = None) -> pa.Array | None:
    """Keys of the stored rows (only of the files ``files`` selects, e.g. one partition's)."""
    if dt is None or not keys:
        return None
    if any(k not in {f.name for f in dt.schema().fields} for k in keys):
        return None
    prev = dt.to_pyarrow_dataset(file_pruning_predicate=files).to_table(columns=keys, use_threads=False)
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


class KeyTap:
    """Passes a reader's batches through (cast to the target schema) while recording keys and errors."""

    def __init__(self, reader: pa.RecordBatchReader, schema: pa.Schema, keys: list[str],
                 check: Callable[[pa.RecordBatch], None] | None = None) -> None:
        self.reader, self.schema, self.keys, self.check = reader, schema, keys, check
        self.key_chunks: list[pa.Array] = []
        self.rows = 0
        self.error: BaseException | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        try:
            for batch in self.reader:
                batch = cast_to(batch, self.schema)
                if self.check is not None:
                    self.check(batch)
                if self.keys:
                    reject_null_keys(batch, self.keys)
                    self.key_chunks.append(key_strings(batch, self.keys))
                self.rows += batch.num_rows
                yield batch
        except Exception as exc:
            self.error = exc
            raise
