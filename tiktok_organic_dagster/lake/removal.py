"""Removing a tenant: delete its partition in one commit, then purge the files that still hold its rows.

Why two steps: a Delta delete only marks files as removed, so older versions (time travel) still read them;
the rows are gone from storage only once those files are vacuumed. ``purge`` does that at once instead of
after the retention period.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pyarrow.compute as pc
from deltalake import CommitProperties

from tiktok_organic_dagster.lake.errors import DeltaCatalogError
from tiktok_organic_dagster.lake.history import count_metadata
from tiktok_organic_dagster.lake.partitions import Partition, add_actions
from tiktok_organic_dagster.lake.writes import TableWriter, WriteResult

OP_DELETE_PARTITION = "delete_partition"  # the operation (not a sync type: last_commit_time ignores it)
_log = logging.getLogger(__name__)


class TableRemover(TableWriter):
    """Deleting one partition and purging deleted files from storage."""

    def delete_partition(self, uri: str, column: str, value: str, *, commit_info: dict[str, str]) -> WriteResult:
        """Delete every row of partition ``column = value`` in one commit (only its files are removed, none
        is rewritten, so writers of other partitions are not disturbed). ``deleted`` is exact (from the
        files' row counts). Nothing there: no commit. The files stay in storage (older versions read them)
        until ``purge`` or ``maintain`` after the retention period removes them.

        The commit info carries ``<prefix>operation = delete_partition``, the run id, the partition and the
        counts, but no sync type: deleting a tenant is not a sync."""
        started = time.monotonic()
        part = Partition.of((column, value))
        assert part is not None
        meta = self._operation_metadata(commit_info, OP_DELETE_PARTITION, part)
        if self._open_or_none(uri) is None:
            raise DeltaCatalogError(f"no Delta table at {uri}")

        def attempt() -> tuple[int, int]:
            dt = self._open(uri)
            files = add_actions(dt, part)  # checks the table is partitioned by `column`
            if not files.num_rows:
                return dt.version(), 0
            counts = files.column("num_records")
            deleted = (int(pc.sum(counts).as_py() or 0) if counts.null_count == 0 else
                       dt.to_pyarrow_dataset(file_pruning_predicate=part.filters).count_rows(use_threads=False))
            info = {**meta, **count_metadata(self.metadata_prefix, 0, 0, 0, deleted, 0)}
            metrics = dt.delete(predicate=part.sql(), commit_properties=CommitProperties(custom_metadata=info))
            if int(metrics.get("num_deleted_rows", deleted)) != deleted:  # a bug, not a race (same snapshot)
                _log.warning("delete of %s in %s: commit info says %d rows, delta's metrics %s",
                             part.describe(), uri, deleted, metrics.get("num_deleted_rows"))
            return dt.version(), deleted

        (version, deleted), attempts = self._with_retry(OP_DELETE_PARTITION, uri, attempt)
        return WriteResult(uri, version, 0, 0, 0, deleted, 0, OP_DELETE_PARTITION,
                           round(time.monotonic() - started, 4), attempts)

    def purge(self, uri: str) -> dict[str, Any]:
        """Remove from storage every data file the latest version does not reference (a full vacuum with
        zero retention), then write a checkpoint, so a deleted partition leaves no Parquet file behind.

        This also drops time travel to every older version, for **every partition** of the table, not only
        the deleted one (their files are gone; ``read(version=...)`` then raises VersionNotAvailableError).
        It also deletes the not yet committed files of a concurrent writer, so run it only while no one
        else writes the table (e.g. in the same pool/lock as the table's writers). The commit log keeps the
        deleted files' entries (paths, partition values, min/max statistics) until it expires with
        ``delta.logRetentionDuration`` and ``maintain`` cleans it up.

        Returns ``{"uri", "removed_files" (table-relative paths), "version", "checkpoint_version"}``."""
        started = time.monotonic()
        dt = self._open_or_none(uri)
        if dt is None:
            raise DeltaCatalogError(f"no Delta table at {uri}")
        removed = dt.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True,
                            commit_properties=self._maint_props())
        dt = self._open(uri)
        dt.create_checkpoint()
        return {"uri": uri, "removed_files": sorted(removed), "version": dt.version(),
                "checkpoint_version": dt.version(), "duration_s": round(time.monotonic() - started, 4)}
