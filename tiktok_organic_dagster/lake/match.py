"""Before a merge commits: which source rows are new to the table and which would change a stored row.

Delta's merge only reports its counts after it has committed (``operationMetrics``), so a commit could not
carry our own ``inserted``/``updated`` under the names the other write kinds use. Matching here first, on the
snapshot the merge then runs on, makes the counts known before the commit: the merge is given only the rows
that insert or change (``update_only_if_changed``), so what it writes is exactly what was counted.

"Changed" is the merge's documented rule: a non-key column not starting with ``_`` differs, null-safely
(null = null; NaN = NaN); a source column the table does not have yet changes a row when it is not null.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from tiktok_organic_dagster.lake.prepare import key_strings


@dataclass
class Match:
    """Masks over the source rows: ``new`` (no stored row has the key), ``update`` (the merge rewrites it)."""

    new: pa.Array
    update: pa.Array

    @property
    def inserted(self) -> int:
        return _count(self.new)

    @property
    def updated(self) -> int:
        return _count(self.update)


def _count(mask: pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)


def compared_columns(columns: list[str], keys: list[str]) -> list[str]:
    """The payload columns whose difference makes a matched row an update."""
    return [c for c in columns if c not in keys and not c.startswith("_")]


def match_source(dt: DeltaTable, source: pa.Table, keys: list[str], prune: pc.Expression | None,
                 only_if_changed: bool, files: list[tuple[str, str, str]] | None = None) -> Match:
    """Match ``source`` (unique keys) against the stored rows that satisfy ``prune`` (the merge's condition
    on the target: rows outside it never match). Reads the keys, and with ``only_if_changed`` the compared
    columns, of the files the merge reads; stored rows are filtered batch by batch.

    ``files``: partition filters selecting the only files the merge can match (one partition's), so the
    other partitions are never read."""
    stored_names = {f.name for f in dt.schema().fields}
    compared = compared_columns(source.column_names, keys) if only_if_changed else []
    columns = [*keys, *(c for c in compared if c in stored_names)]
    wanted = key_strings(source, keys)
    dataset = dt.to_pyarrow_dataset(file_pruning_predicate=files)
    parts, part_keys = [], []
    for batch in dataset.to_batches(columns=columns, filter=prune, use_threads=False):
        batch_keys = key_strings(batch, keys)
        hit = pc.is_in(batch_keys, value_set=wanted)
        if _count(hit):
            parts.append(batch.filter(hit))
            part_keys.append(batch_keys.filter(hit))
    stored_keys = pa.concat_arrays(part_keys) if part_keys else pa.array([], pa.string())
    at = pc.index_in(wanted, value_set=stored_keys)  # per source row: its stored row, or null
    matched = at.is_valid()
    new = pc.invert(matched)
    if not only_if_changed:  # every match is rewritten, unless the source has nothing but keys
        has_payload = any(c not in keys for c in source.column_names)
        return Match(new, matched if has_payload else pc.and_(matched, False))
    stored = pa.Table.from_batches(parts, schema=parts[0].schema) if parts else None
    differs = pa.array([False] * source.num_rows, pa.bool_())
    for column in compared:
        if column not in stored_names or stored is None:
            diff = source.column(column).is_valid()
        else:
            diff = _distinct(source.column(column), stored.column(column).take(pc.fill_null(at, 0)))
        differs = pc.or_(differs, diff)
    return Match(new, pc.and_(matched, differs))


def _distinct(a: pa.ChunkedArray | pa.Array, b: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Null-safe ``a IS DISTINCT FROM b`` per row (NaN equals NaN)."""
    if not a.type.equals(b.type):
        try:
            b = b.cast(a.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    try:
        same = pc.fill_null(pc.equal(a, b), False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):  # nested types: compare as Python
        return pa.array([x != y for x, y in zip(a.to_pylist(), b.to_pylist(), strict=True)], pa.bool_())
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    if pa.types.is_floating(a.type) and a.type.equals(b.type):
        both_null = pc.or_(both_null, pc.fill_null(pc.and_(pc.is_nan(a), pc.is_nan(b)), False))
    result = pc.invert(pc.or_(same, both_null))
    return result.combine_chunks() if isinstance(result, pa.ChunkedArray) else result
