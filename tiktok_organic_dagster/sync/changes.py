"""What changed between the listing and the stored rows: the merge source says exactly what the sync saw."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc


def _differs(new: pa.ChunkedArray, old: pa.ChunkedArray) -> pa.ChunkedArray:
    """Null-safe 'value changed' (null -> value and value -> null count as changes)."""
    if new.type != old.type:
        try:
            old = old.cast(new.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pa.chunked_array([pa.repeat(pa.scalar(True), len(new))])
    unequal = pc.fill_null(pc.not_equal(new, old), False)
    return pc.or_(unequal, pc.xor(pc.is_null(new), pc.is_null(old)))


def mark_changes(rows: pa.Table, current: pa.Table, now: datetime) -> tuple[pa.Table, int, int]:
    """Make the merge source say exactly what the sync saw.

    Every row is written on merge (``update_only_if_changed=False``), because ``_last_seen_at`` must move
    for each video the API returned — the catalog's change detection ignores ``_`` columns and would skip
    unchanged rows. ``_synced_at`` keeps its meaning, "payload last inserted or changed": rows whose API
    fields all equal the stored ones keep their stored ``_synced_at``. Returns (rows, matched, changed).
    """
    payload = [c for c in rows.column_names if c != "id" and not c.startswith("_")]
    stored = [c for c in payload if c in current.column_names]
    keep = ["_synced_at"] if "_synced_at" in current.column_names else []
    right = current.select(["id", *stored, *keep])
    right = right.rename_columns(["id", *(f"__old_{c}" for c in right.column_names[1:])])
    right = right.append_column("__matched", pa.repeat(pa.scalar(True), right.num_rows))
    joined = rows.join(right, "id", join_type="left outer", use_threads=False)
    matched = pc.fill_null(joined.column("__matched"), False)
    changed = pa.chunked_array([pa.repeat(pa.scalar(False), joined.num_rows)])
    for c in payload:
        diff = _differs(joined.column(c), joined.column(f"__old_{c}")) if c in stored else pc.is_valid(joined[c])
        changed = pc.or_(changed, diff)
    out = joined.select(rows.column_names)
    if keep and "_synced_at" in out.column_names:
        unchanged = pc.and_(matched, pc.invert(changed))
        synced = pc.if_else(unchanged, joined.column("__old__synced_at"), out.column("_synced_at"))
        out = out.set_column(out.schema.get_field_index("_synced_at"), "_synced_at", synced)
    n_matched = int(pc.sum(matched).as_py() or 0)
    n_changed = int(pc.sum(pc.and_(matched, changed)).as_py() or 0)
    return out, n_matched, n_changed
