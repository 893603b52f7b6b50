"""The Delta catalog: where tables live and the only code that writes them.

Built directly on ``deltalake`` (delta-rs 1.6) because dagster-deltalake has no merge and cannot set
retention properties. Writes are in ``writes``; layout and settings in ``store``.

Every data commit carries ``<metadata_prefix>sync_type``, ``run_id`` and the same row counts (rows_written,
inserted, updated, deleted, unchanged) in its commit info (``history()``), merges included (see ``match``).

Retention (``delta_log_retention_days`` = N): ``delta.logRetentionDuration`` and
``delta.deletedFileRetentionDuration`` are both ``interval N days`` (set on create; changed with one extra
commit when the setting changes). ``maintain()`` guarantees that every version committed in the last N days
stays readable (``read(version=...)``, ``read(as_of=...)``); reading an older one — or ``as_of`` a time
before the oldest readable commit, which delta-rs would silently clamp — raises ``VersionNotAvailableError``.
Without ``maintain()`` nothing is vacuumed.

Partitions (one per tenant): every read, write and ``maintain`` takes ``partition=(column, value)``, which
confines it to that partition of a table partitioned by ``column`` (see ``partitions``); None = the whole
table.

S3 needs no lock service: delta-rs >= 1.6.1 commits with conditional put (``If-None-Match``). For MinIO/R2
pass ``storage_options={"aws_conditional_put": "etag"}``.

Types: timestamps are stored as ``timestamp[us, tz=UTC]`` (other zones converted, ns truncated to us); naive
timestamps are rejected because delta-rs would create a ``timestampNtz`` column. Reads use
``to_pyarrow_dataset().to_table(use_threads=False)`` because the threaded scan aborts the interpreter at exit
on some machines.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from tiktok_organic_dagster.lake.errors import DeltaCatalogError, VersionNotAvailableError
from tiktok_organic_dagster.lake.history import commit_time, iter_history, normalize_history_entry
from tiktok_organic_dagster.lake.maintenance import maintain_table
from tiktok_organic_dagster.lake.partitions import Partition, PartitionArg, add_actions, present_values, pruning
from tiktok_organic_dagster.lake.removal import TableRemover
from tiktok_organic_dagster.lake.store import SYNC_TYPES


class DeltaCatalog(TableRemover):
    """Tables under one root: reads, history and maintenance here; settings and layout in ``TableStore``;
    the write verbs in ``TableWriter``; deleting a partition and purging its files in ``TableRemover``."""

    def exists(self, uri: str) -> bool:
        return DeltaTable.is_deltatable(uri, self.storage_options_for(uri))

    def version(self, uri: str) -> int | None:
        return self._open(uri).version() if self.exists(uri) else None

    def schema(self, uri: str) -> pa.Schema:
        """Arrow schema of the latest version."""
        return self._open(uri).to_pyarrow_dataset().schema

    def describe(self, uri: str, partition: PartitionArg = None) -> tuple[int, pa.Schema]:
        """Row count (of ``partition`` if given) and schema of the latest version from one log read (a
        sync's metadata needs both)."""
        dt = self._open(uri)
        return self._row_count(dt, Partition.of(partition)), dt.to_pyarrow_dataset().schema

    def row_count(self, uri: str, version: int | None = None, partition: PartitionArg = None) -> int:
        """Rows in a version (of one partition) from the log's file statistics; scans only if a file lacks
        stats."""
        return self._row_count(self._open(uri, version), Partition.of(partition))

    @staticmethod
    def _row_count(dt: DeltaTable, part: Partition | None = None) -> int:
        if part is None:
            counts = pa.table(dt.get_add_actions(flatten=False)).column("num_records").to_pylist()
        else:
            counts = add_actions(dt, part).column("num_records").to_pylist()
        if any(c is None for c in counts):
            return dt.to_pyarrow_dataset(file_pruning_predicate=pruning(part)).count_rows(use_threads=False)
        return int(sum(counts))

    def read(self, uri: str, *, version: int | None = None, as_of: datetime | None = None,
             columns: list[str] | None = None, filter: pc.Expression | None = None,  # noqa: A002
             partition: PartitionArg = None) -> pa.Table:
        """Read a table (optionally an older version); raises VersionNotAvailableError outside retention.

        ``filter`` prunes files by their statistics before reading rows (e.g. recent snapshot dates);
        ``partition`` reads only that partition's files (the table must be partitioned by its column)."""
        part = Partition.of(partition)
        if version is not None and as_of is not None:
            raise ValueError("pass either version or as_of, not both")
        if not self.exists(uri):
            raise DeltaCatalogError(f"no Delta table at {uri}")
        try:
            dt = self._open(uri, version)
        except (TableNotFoundError, DeltaError) as exc:
            raise VersionNotAvailableError(f"version {version} of {uri} is not available: {exc}") from exc
        if as_of is not None:
            if as_of.tzinfo is None:
                raise ValueError("as_of must be timezone-aware (UTC)")
            dt.load_as_version(as_of)
            loaded = next((e for e in iter_history(self._open(uri))
                           if e["version"] == dt.version()), None)
            if loaded is None or commit_time(loaded) > as_of:  # delta-rs clamps silently
                oldest = f" (v{dt.version()}, {commit_time(loaded).isoformat()})" if loaded else ""
                raise VersionNotAvailableError(
                    f"as_of {as_of.isoformat()} is before the oldest retained commit of {uri}{oldest}")
        if part is not None:
            part.check_table(dt)
        try:
            return dt.to_pyarrow_dataset(file_pruning_predicate=pruning(part)).to_table(
                columns=columns, filter=filter, use_threads=False)
        except FileNotFoundError as exc:
            raise VersionNotAvailableError(
                f"data files of version {dt.version()} of {uri} were removed by vacuum (outside the "
                f"{self.delta_log_retention_days}-day retention)"
            ) from exc

    def read_keys(self, uri: str, key: str, values: pa.Array, *, prune: pc.Expression | None = None,
                  partition: PartitionArg = None) -> pa.Table:
        """The stored rows whose ``key`` is in ``values``, filtered batch by batch so a large table is never
        held whole. (Not a dataset filter expression: delta's file-statistics guarantees can be typed
        string_view, which pyarrow 26 cannot compare with a string column.)

        ``prune`` (e.g. ``create_time >= t``, which every wanted row satisfies) lets the scan skip files and
        row groups by their statistics, so looking up a recent window does not read the whole table;
        ``partition`` confines the lookup to that partition's files."""
        part = Partition.of(partition)
        dt = self._open(uri)
        if part is not None:
            part.check_table(dt)
        dataset = dt.to_pyarrow_dataset(file_pruning_predicate=pruning(part))
        batches = [b.filter(pc.is_in(b.column(key), value_set=values))
                   for b in dataset.to_batches(filter=prune, use_threads=False)]
        return pa.Table.from_batches(batches, schema=dataset.schema)

    def max_value(self, uri: str, column: str, partition: PartitionArg = None) -> Any:
        """Largest value of ``column`` (in ``partition``), from the log's per-file statistics when every file
        has them (no data file is read); otherwise from the column itself. None for an empty table."""
        part = Partition.of(partition)
        dt = self._open(uri)
        files = add_actions(dt, part)
        stat = f"max.{column}"
        if files.num_rows and stat in files.column_names and files.column(stat).null_count == 0:
            return pc.max(files.column(stat)).as_py()
        known = dt.to_pyarrow_dataset(file_pruning_predicate=pruning(part)).to_table(
            columns=[column], use_threads=False)
        return pc.max(known.column(column)).as_py()

    def file_ranges(self, uri: str, column: str, partition: PartitionArg = None) -> list[tuple[Any, Any]] | None:
        """(min, max) of ``column`` per data file (of ``partition``) from the log's statistics; None if a
        file lacks them."""
        files = add_actions(self._open(uri), Partition.of(partition))
        lo, hi = f"min.{column}", f"max.{column}"
        if lo not in files.column_names or hi not in files.column_names:
            return None if files.num_rows else []
        mins, maxs = files.column(lo), files.column(hi)
        if mins.null_count or maxs.null_count:
            return None
        return list(zip(mins.to_pylist(), maxs.to_pylist(), strict=True))

    def history(self, uri: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits newest first: version, timestamp (UTC), operation, sync_type, run_id, counts, metadata."""
        return [normalize_history_entry(e, self.metadata_prefix) for e in self._open(uri).history(limit)
                if int(e.get("version", -1)) >= 0]

    def last_commit_time(self, uri: str, sync_type: str | None = None, *, app_id: str | None = None,
                         partition: PartitionArg = None) -> datetime | None:
        """UTC time of the newest data commit (of ``sync_type`` if given); None if there is none.

        With ``app_id`` (the one ``overwrite`` recorded), the app transaction answers when the commit info
        has been cleaned up with the log: a log retention shorter than the period between full writes must
        not make the last one look like "never". With ``partition``, only commits whose info records that
        partition count (pass the partition's own ``app_id``: the marker says nothing about partitions)."""
        if sync_type is not None and sync_type not in SYNC_TYPES:
            raise ValueError(f"sync_type must be one of {SYNC_TYPES}, got {sync_type!r}")
        part = Partition.of(partition)
        if not self.exists(uri):
            return None
        dt = self._open(uri)
        for entry in iter_history(dt):
            found = entry.get(self.metadata_prefix + "sync_type")
            if part is not None and not part.recorded_in(entry, self.metadata_prefix):
                continue
            if found is not None and (sync_type is None or found == sync_type):
                return commit_time(entry)
        if app_id is not None:
            marker = dt.transaction_version(app_id)
            if marker is not None:
                return datetime.fromtimestamp(marker / 1000, timezone.utc)
        return None

    def partition_columns(self, uri: str) -> list[str]:
        """The table's partition columns ([] when unpartitioned or absent)."""
        dt = self._open_or_none(uri)
        return list(dt.metadata().partition_columns) if dt is not None else []

    def partition_values(self, uri: str, column: str) -> list[str]:
        """Values of partition ``column`` that have files in the latest version, sorted ([] if no table)."""
        dt = self._open_or_none(uri)
        return present_values(dt, column) if dt is not None else []

    def maintain(self, uri: str, partition: PartitionArg = None) -> dict[str, Any]:
        """Retention properties, compaction when many small files, full vacuum, checkpoint, log cleanup.

        With ``partition``, compaction counts and rewrites only that partition's files, so maintenance after
        one tenant's sync does not conflict with another tenant's concurrent merge (a whole-table compaction
        would: it rewrites files that merge read)."""
        part = Partition.of(partition)
        if part is not None:
            part.check_table(self._open(uri))
        return maintain_table(
            lambda: self._open(uri), uri=uri, storage_options=self.storage_options_for(uri),
            retention_days=self.delta_log_retention_days, commit_properties=self._maint_props(),
            checkpoint_every=self.checkpoint_every_commits,
            compact_min_small_files=self.compact_min_small_files, small_file_bytes=self.small_file_bytes,
            partition=part,
        )
