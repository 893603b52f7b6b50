"""Retention and maintenance of one table: retention properties, compaction, vacuum, checkpoints, log cleanup.

Works the same on local disk, S3, GCS and ADLS.

Why the maintenance order is ``compact -> vacuum(full) -> checkpoint -> cleanup_metadata``:

* ``vacuum`` in *lite* mode only sees files named by remove tombstones still in the snapshot; a
  checkpoint written after a tombstone expired drops it, orphaning the file forever. ``full=True``
  costs the same single listing (lite lists the whole table too) and also finds those files and the
  leftovers of failed writes. In deltalake 1.6 a full vacuum still only deletes (a) files whose
  tombstone is older than ``delta.deletedFileRetentionDuration`` and (b) unreferenced files whose
  object mtime is older than it — so in-flight writes of concurrent writers and files of versions
  inside the retention window are safe (checked by experiment and by this module's tests).
* ``cleanup_metadata`` only deletes commit files older than ``delta.logRetentionDuration`` *and*
  older than the newest checkpoint at or below the oldest in-retention version, so it needs a
  checkpoint first; we write one every ``checkpoint_every`` commits instead of on every call.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.fs import DeltaStorageHandler

from tiktok_organic_dagster.lake.partitions import Partition

LOG_RETENTION_PROP = "delta.logRetentionDuration"
FILE_RETENTION_PROP = "delta.deletedFileRetentionDuration"

# delta-rs silently ignores malformed intervals (e.g. "30 days") and falls back to its defaults, so every
# value we write or trust is checked against the grammar it actually parses.
_INTERVAL_RE = re.compile(
    r"^interval (\d+) (nanosecond|microsecond|millisecond|second|minute|hour|day|week)s?$"
)
_UNIT_SECONDS = {
    "nanosecond": 1e-9, "microsecond": 1e-6, "millisecond": 1e-3, "second": 1.0,
    "minute": 60.0, "hour": 3600.0, "day": 86400.0, "week": 604800.0,
}

_log = logging.getLogger(__name__)


def interval_seconds(value: str) -> float:
    """Seconds in a Delta ``interval N unit`` string; ValueError when delta-rs would ignore it."""
    match = _INTERVAL_RE.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(
            f"retention interval {value!r} is malformed: use 'interval <N> <unit>' with unit "
            "second|minute|hour|day|week (delta-rs silently ignores anything else)"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def retention_properties(days: int) -> dict[str, str]:
    """Table properties that make logs *and* removed data files live exactly ``days`` days."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"delta_log_retention_days must be an integer >= 1, got {days!r}")
    value = f"interval {days} days"
    interval_seconds(value)  # guard the format we write
    return {LOG_RETENTION_PROP: value, FILE_RETENTION_PROP: value}


def ensure_retention(dt: DeltaTable, days: int, commit_properties: CommitProperties) -> bool:
    """Set the retention properties on an existing table only when they differ (a commit each time)."""
    wanted = retention_properties(days)
    current = dt.metadata().configuration or {}
    if all(current.get(k) == v for k, v in wanted.items()):
        return False
    _log.info("setting retention on %s: %s (was %s)", dt.table_uri, wanted, current)
    dt.alter.set_table_properties(wanted, commit_properties=commit_properties)
    return True


def last_checkpoint_version(uri: str, storage_options: dict[str, str] | None) -> int | None:
    """Version of the newest checkpoint, read from ``_delta_log/_last_checkpoint`` on any store."""
    fs = pafs.PyFileSystem(DeltaStorageHandler(uri, storage_options))
    try:
        with fs.open_input_stream("_delta_log/_last_checkpoint") as stream:
            return int(json.loads(stream.read())["version"])
    except (FileNotFoundError, OSError, KeyError, ValueError):
        return None


def maintain_table(
    open_table: Callable[[], DeltaTable],
    *,
    uri: str,
    storage_options: dict[str, str] | None,
    retention_days: int,
    commit_properties: CommitProperties,
    checkpoint_every: int,
    compact_min_small_files: int,
    small_file_bytes: int,
    partition: Partition | None = None,
) -> dict[str, Any]:
    """Retention properties, compaction of small files, full vacuum, checkpoint, expired-log cleanup.

    Best effort against concurrent writers: a maintenance commit that loses a race is logged and
    skipped (the next run picks it up); data writes are never blocked by it. ``partition``: compaction
    counts and rewrites only that partition's files (``partition_filters``), so it cannot conflict with a
    concurrent write of another partition.
    """
    started = time.monotonic()
    report: dict[str, Any] = {"uri": uri}
    dt = open_table()
    report["retention_updated"] = _best_effort(
        "set retention", lambda: ensure_retention(dt, retention_days, commit_properties), False
    )
    report["retention"] = retention_properties(retention_days)

    if partition is None:
        files = pa.table(dt.get_add_actions(flatten=False)).select(["path", "size_bytes"])
    else:
        files = partition.files(pa.table(dt.get_add_actions(flatten=True)))
        report["partition"] = partition.values
    sizes = files.column("size_bytes").to_pylist()
    small = sum(1 for s in sizes if s < small_file_bytes)
    report["files_before"] = len(sizes)
    report["compacted"] = None
    if small >= compact_min_small_files:
        dt = open_table()
        report["compacted"] = _best_effort(
            "compact", lambda: _compact(dt, commit_properties, partition), None
        )

    dt = open_table()
    deleted = _best_effort("vacuum", lambda: dt.vacuum(dry_run=False, full=True, enforce_retention_duration=True,
                                                       commit_properties=commit_properties), [])
    report["vacuumed_files"] = len(deleted)

    dt = open_table()
    version = dt.version()
    last_cp = last_checkpoint_version(uri, storage_options)
    report["checkpoint_version"] = None
    if last_cp is None or version - last_cp >= checkpoint_every or report["compacted"]:
        dt.create_checkpoint()
        report["checkpoint_version"] = version
    dt.cleanup_metadata()
    report["version"] = version
    report["files_after"] = len(dt.file_uris())
    report["duration_s"] = round(time.monotonic() - started, 4)
    return report


def _compact(dt: DeltaTable, commit_properties: CommitProperties, partition: Partition | None = None
             ) -> dict[str, int]:
    filters = partition.filters if partition is not None else None
    metrics = dt.optimize.compact(partition_filters=filters, commit_properties=commit_properties)
    return {"files_added": int(metrics.get("numFilesAdded", 0)),
            "files_removed": int(metrics.get("numFilesRemoved", 0))}


def _best_effort(what: str, fn: Callable[[], Any], fallback: Any) -> Any:
    try:
        return fn()
    except CommitFailedError as exc:
        _log.warning("maintenance step '%s' lost a commit race, skipped until next run: %s", what, exc)
        return fallback
