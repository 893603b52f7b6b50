"""One partition per tenant: the (column, value) a write or read is confined to.

Why partitions: every file of a partitioned Delta table belongs to exactly one value of the partition column,
so a write that says which partition it touches (a literal in its predicate, or partition filters) reads and
replaces only that partition's files. delta-rs's conflict checker then lets writers of different partitions
commit side by side: a merge whose predicate has ``t.col = 'value'`` survives a concurrent commit into another
partition (it retries internally), while one without the literal counts as having read the whole table and
fails with ``CommitFailedError`` (measured with delta-rs 1.6.6; the partition tests show both).

Values are compared as text, like Delta stores them (``partitionValues`` are strings). The empty string is
refused: Delta spells a null partition value that way.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from tiktok_organic_dagster.lake.errors import CatalogConfigError

PartitionArg = tuple[str, str] | None  # (column, value) as callers pass it; None = the whole table
_SAFE_FOLDER = re.compile(r"^[A-Za-z0-9_.-]+$")


def sql_literal(value: str) -> str:
    """A SQL string literal; quotes are doubled, so no value can end the literal early."""
    return "'" + value.replace("'", "''") + "'"


def sql_column(column: str, alias: str | None = None) -> str:
    return f"{alias}.`{column}`" if alias else f"`{column}`"


@dataclass(frozen=True)
class Partition:
    """A validated (column, value)."""

    column: str
    value: str

    @classmethod
    def of(cls, partition: PartitionArg) -> Partition | None:
        if partition is None:
            return None
        if not isinstance(partition, tuple) or len(partition) != 2:
            raise CatalogConfigError(f"partition must be a (column, value) tuple, got {partition!r}")
        column, value = partition
        if not isinstance(column, str) or not column or "`" in column:
            raise CatalogConfigError(f"partition column {column!r} must be a non-empty name without backticks")
        if not isinstance(value, str) or not value:
            raise CatalogConfigError(
                f"partition value {value!r} of column {column!r} must be a non-empty string "
                "(Delta stores an empty partition value as null)")
        return cls(column, value)

    def sql(self, alias: str | None = None) -> str:
        """``alias.`col` = 'value'``: the literal that confines a predicate to this partition's files."""
        return f"{sql_column(self.column, alias)} = {sql_literal(self.value)}"

    @property
    def filters(self) -> list[tuple[str, str, str]]:
        """Tuple filters for ``file_pruning_predicate`` / ``partition_filters``: selects files exactly."""
        return [(self.column, "=", self.value)]

    @property
    def values(self) -> dict[str, str]:
        """The ``partitionValues`` of this partition's add actions."""
        return {self.column: self.value}

    @property
    def folder(self) -> str:
        """Folder of the files the streamed writer adds (``col=value`` like delta-rs when both are plain
        names; otherwise a digest, so no value can form a path)."""
        if _SAFE_FOLDER.match(self.column) and _SAFE_FOLDER.match(self.value) and self.value not in {".", ".."}:
            return f"{self.column}={self.value}"
        digest = hashlib.sha256(f"{self.column}\x1f{self.value}".encode()).hexdigest()[:16]
        return f"partition-{digest}"

    def describe(self) -> str:
        return f"{self.column}={self.value!r}"

    def metadata(self, prefix: str) -> dict[str, str]:
        """Commit info keys that tell history readers which partition a commit wrote."""
        return {prefix + "partition_column": self.column, prefix + "partition_value": self.value}

    def recorded_in(self, entry: dict[str, Any], prefix: str) -> bool:
        return (entry.get(prefix + "partition_column") == self.column
                and entry.get(prefix + "partition_value") == self.value)

    def check_rows(self, data: pa.Table | pa.RecordBatch) -> None:
        """Every row must be in the partition: a write confined to it cannot hold another tenant's rows."""
        if self.column not in data.schema.names:
            raise CatalogConfigError(
                f"partition column {self.column!r} is not in the data columns {data.schema.names}")
        if not data.num_rows:
            return
        text = pc.cast(data.column(self.column), pa.string())
        outside = pc.invert(pc.fill_null(pc.equal(text, self.value), False))
        bad = int(pc.sum(outside).as_py() or 0)
        if bad:
            example = text.filter(outside)[0].as_py()
            raise CatalogConfigError(
                f"{bad} row(s) are outside partition {self.describe()} (e.g. {self.column}={example!r}): "
                f"every row written to the partition must have {self.column} == {self.value!r}")

    def check_table(self, dt: DeltaTable) -> None:
        """The table must be partitioned by exactly this column, or a partition write would not stay in it."""
        columns = list(dt.metadata().partition_columns)
        if columns != [self.column]:
            found = f"partitioned by {columns}" if columns else "not partitioned"
            raise CatalogConfigError(
                f"table {dt.table_uri} is {found}, not by {self.column!r}: partition={self.column!r}, "
                f"{self.value!r} needs a table partitioned by that column alone (write it with "
                "partition=None, or recreate it partitioned)")

    def files(self, actions: pa.Table) -> pa.Table:
        """The rows of ``get_add_actions(flatten=True)`` that belong to this partition."""
        name = f"partition.{self.column}"
        if not actions.num_rows:
            return actions
        if name not in actions.column_names:
            return actions.slice(0, 0)
        text = pc.cast(actions.column(name), pa.string())
        return actions.filter(pc.fill_null(pc.equal(text, self.value), False))


def reject_partitioned(dt: DeltaTable | None, what: str) -> None:
    """A whole-table write into a partitioned table would replace every tenant's rows: say which to write."""
    columns = list(dt.metadata().partition_columns) if dt is not None else []
    if dt is not None and columns:
        raise CatalogConfigError(
            f"table {dt.table_uri} is partitioned by {columns}: {what} needs "
            f"partition=({columns[0]!r}, <value>) so it replaces only that partition")


def add_actions(dt: DeltaTable, partition: Partition | None) -> pa.Table:
    """The current files (flattened statistics), only those of ``partition`` if given (checked first)."""
    if partition is not None:
        partition.check_table(dt)
    actions = pa.table(dt.get_add_actions(flatten=True))
    return partition.files(actions) if partition is not None else actions


def present_values(dt: DeltaTable, column: str) -> list[str]:
    """Distinct values of partition ``column`` among the current files (sorted)."""
    columns = list(dt.metadata().partition_columns)
    if column not in columns:
        raise CatalogConfigError(f"{column!r} is not a partition column of {dt.table_uri} (it has {columns})")
    actions = pa.table(dt.get_add_actions(flatten=True))
    name = f"partition.{column}"
    if not actions.num_rows or name not in actions.column_names:
        return []
    values = pc.unique(pc.cast(actions.column(name), pa.string())).drop_null()
    return sorted(str(v) for v in values.to_pylist())


def pruning(partition: Partition | None) -> list[tuple[str, str, str]] | None:
    return partition.filters if partition is not None else None
