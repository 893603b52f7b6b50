"""Conditions a merge predicate is made of (with, for statistics, the dataset expression that prunes alike).

A literal condition on the target (``t.col >= '2026-01-01'``, ``t.col = 'value'``) is what lets delta-rs skip
files by their statistics or partition values, and what its conflict checker reads to decide that a
concurrent commit touched none of the files this merge read.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tiktok_organic_dagster.lake.partitions import Partition, sql_column

Prune = tuple[str, pc.Expression]  # one condition on the target: merge-predicate SQL, and for a dataset scan


def at_least(column: str, value: Any, or_null: bool = False) -> Prune | None:
    """Condition ``t.column >= value`` for a date or timezone-aware timestamp (the types whose ISO spelling
    delta-rs compares exactly); None for anything else, which merges unpruned."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        literal, scalar = value.astimezone(timezone.utc).isoformat(), pa.scalar(value, pa.timestamp("us", "UTC"))
    elif isinstance(value, date) and not isinstance(value, datetime):
        literal, scalar = value.isoformat(), pa.scalar(value, pa.date32())
    else:
        return None
    condition, expr = f"t.`{column}` >= '{literal}'", pc.field(column) >= scalar
    if or_null:
        return f"({condition} OR t.`{column}` IS NULL)", expr | pc.field(column).is_null()
    return condition, expr


def partition_conditions(part: Partition | None, keys: list[str]) -> list[str]:
    """Both ``t.col = s.col`` (rows match within the partition) and the literal ``t.col = 'value'``: the
    literal is what lets delta-rs read only the partition's files and see that a concurrent merge into
    another partition does not conflict (without it the merge counts as reading the whole table)."""
    if part is None:
        return []
    same = [] if part.column in keys else [f"{sql_column(part.column, 't')} = {sql_column(part.column, 's')}"]
    return [*same, part.sql("t")]
