"""Commit history: what each commit recorded (ours and delta's metrics), read newest first.

Every data commit (overwrite, merge, snapshot merge) records ``<prefix>rows_written``, ``inserted``,
``updated``, ``deleted`` and ``unchanged`` in its commit info (``count_metadata``); an overwrite without a key
records only ``rows_written``. Merges committed before merges matched their source first recorded only
``rows_written``: their counts are read from delta's ``operationMetrics`` of the same commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from deltalake import DeltaTable

COUNT_FIELDS = ("rows_written", "inserted", "updated", "deleted", "unchanged")


def commit_time(entry: dict[str, Any]) -> datetime:
    """UTC datetime of a raw ``DeltaTable.history()`` entry (delta stores epoch milliseconds)."""
    return datetime.fromtimestamp(int(entry["timestamp"]) / 1000.0, tz=timezone.utc)


def normalize_history_entry(entry: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Flatten a raw history entry: our commit metadata plus counts (ours, else delta's metrics)."""
    metrics = entry.get("operationMetrics") or {}
    out: dict[str, Any] = {
        "version": entry.get("version"),
        "timestamp": commit_time(entry),
        "operation": entry.get("operation"),
        "sync_type": entry.get(prefix + "sync_type"),
        "run_id": entry.get(prefix + "run_id"),
        "metadata": {k: v for k, v in entry.items() if k.startswith(prefix)},
        "operation_metrics": metrics,
    }
    for name in COUNT_FIELDS:
        out[name] = entry.get(prefix + name)
    if entry.get("operation") == "MERGE" and out["inserted"] is None:
        # merges committed before they recorded their own counts: delta's metrics of the same commit
        out["inserted"] = metrics.get("num_target_rows_inserted", out["inserted"])
        out["updated"] = metrics.get("num_target_rows_updated", out["updated"])
        out["deleted"] = metrics.get("num_target_rows_deleted", out["deleted"])
        if out["rows_written"] is not None and out["inserted"] is not None and out["updated"] is not None:
            out["unchanged"] = int(out["rows_written"]) - int(out["inserted"]) - int(out["updated"])
    elif out["rows_written"] is None and "num_added_rows" in metrics:
        out["rows_written"] = metrics["num_added_rows"]
    return out


def iter_history(dt: DeltaTable) -> Iterator[dict[str, Any]]:
    """Raw history newest first, fetched in growing pages so "find the newest X" stays cheap."""
    seen: set[int] = set()
    for limit in (25, 250, None):
        entries = dt.history(limit)
        fresh = [e for e in entries if int(e.get("version", -1)) >= 0 and e["version"] not in seen]
        yield from fresh
        seen.update(e["version"] for e in fresh)
        if limit is None or len(entries) < limit:
            return


def count_metadata(prefix: str, rows: int, inserted: int | None, updated: int | None, deleted: int | None,
                   unchanged: int | None = None) -> dict[str, int]:
    """The counts every write kind records in its commit info, under the same names."""
    counts = {"rows_written": rows, "inserted": inserted, "updated": updated, "deleted": deleted,
              "unchanged": unchanged if unchanged is not None else (0 if inserted is not None else None)}
    return {prefix + k: v for k, v in counts.items() if v is not None}
