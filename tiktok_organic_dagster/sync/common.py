"""What every stream's sync shares: the result it returns, the blocking checks before a commit, scope errors
that name the stream, and where its tables are."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import pyarrow as pa

from tiktok_organic_dagster.lake import DeltaCatalog, WriteResult
from tiktok_organic_dagster.names import ACCOUNT_COLUMN, COMMIT_PREFIX
from tiktok_organic_dagster.settings import SourceSettings, SyncType
from tiktok_organic_dagster.sync.checks import CheckResult, check_batch
from tiktok_organic_dagster.sync.errors import BatchCheckFailed
from tiktok_organic_dagster.tiktok import MissingScopeError

T = TypeVar("T")


@dataclass
class StreamResult:
    """What one stream's sync did. ``batch`` holds the rows read: every column for user_info and incremental
    videos, only ``SUMMARY_COLUMNS`` for a full videos sync (the rest went to Delta from the buffer)."""

    sync_type: SyncType
    write: WriteResult | None  # None: the table was not selected, only its history was written
    history: WriteResult | None
    batch: pa.Table
    checks: list[CheckResult]
    metadata: dict[str, object] = field(default_factory=dict)


def commit_info(run_id: str, source: str, stream: str, account: str | None = None) -> dict[str, str]:
    info = {f"{COMMIT_PREFIX}run_id": run_id, f"{COMMIT_PREFIX}source": source, f"{COMMIT_PREFIX}stream": stream}
    if account is not None:
        info[f"{COMMIT_PREFIX}account"] = account
    return info


Partition = tuple[str, str] | None  # (column, value) of a lake partition, None for an unpartitioned table


def partition_of(account: str | None) -> Partition:
    """The lake partition one account's sync writes: a multi-account source's tables hold every account."""
    return (ACCOUNT_COLUMN, account) if account is not None else None


def _for_stream(exc: MissingScopeError, stream: str) -> MissingScopeError:
    """Name the stream in scope errors: the user must know what to re-authorize for."""
    return MissingScopeError(exc.scope, f"stream '{stream}' cannot sync: {exc}")


def scoped(stream: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except MissingScopeError as exc:
        raise _for_stream(exc, stream) from None


def scoped_pages(stream: str, pages: Iterator[list[dict]]) -> Iterator[list[dict]]:
    """Like :func:`scoped` for a generator: its requests (and scope errors) happen while it is iterated."""
    try:
        yield from pages
    except MissingScopeError as exc:
        raise _for_stream(exc, stream) from None


def validate(label: str, batch: pa.Table, key: str, counters: tuple[str, ...]) -> list[CheckResult]:
    """The blocking checks; ``label`` names the table in the error (e.g. ``raw/tiktok_organic/videos``)."""
    results = check_batch(batch, key, counters)
    failed = [r.name for r in results if not r.passed]
    if failed:
        raise BatchCheckFailed(
            f"{label}: blocking check(s) {failed} failed on the synced batch; "
            "nothing was written and the table stays at its last good version",
            results,
        )
    return results


def table_uris(catalog: DeltaCatalog, source: SourceSettings, stream: str) -> tuple[str, str]:
    """The stream's table and its history table."""
    cfg = source.streams[stream]
    table = source.table_name(stream)
    return catalog.table_uri(cfg.layer, cfg.folder, table), catalog.table_uri(cfg.layer, cfg.folder, table + "_history")
