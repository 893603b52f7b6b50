"""Delta Lake catalog resource: where tables live and how they are written, read and kept tidy.

Built directly on ``deltalake`` (delta-rs 1.6) because dagster-deltalake has no merge and cannot set
retention properties.

Layout: ``<root>/<layer>/<folder>/<table_prefix><table_name>``. ``root_uri`` comes from config, else
``TIKTOK_DELTA_ROOT``, else ``./data/lakehouse`` made absolute. ``s3://``, ``gs://``, ``az://``/``abfs(s)://``
roots take credentials from the environment at call time (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``); only
non-secret options (region, endpoint, timeouts) may sit in config ``storage_options``.

Writes (each is exactly one data commit; a failure midway — e.g. the source stream raising — leaves
the table at its previous version; the exception from the source is re-raised as is):

* ``overwrite`` (sync_type "full"): replaces rows and schema. With ``key``, ``inserted`` = keys new to
  the table, ``updated`` = keys present before and after (their rows are rewritten wholesale),
  ``deleted`` = keys that left, ``unchanged`` = 0. Only the key columns of the previous version are read.
* ``merge`` (sync_type "incremental"): upsert on ``key``; the source is de-duplicated first (last row
  wins). New source columns are added to the schema; target columns missing from the source keep
  their values on update and are null on insert. With ``update_only_if_changed`` a matched row is
  rewritten only if a non-key column not starting with ``_`` differs (null-safe). ``_``-prefixed
  bookkeeping columns such as ``_synced_at`` never trigger an update on their own but are written
  with the row — so they mean "last inserted/changed", not "last seen". ``unchanged`` = matched
  source rows that were not rewritten. A merge that changes nothing creates no commit.
* ``snapshot_merge`` (sync_type "snapshot"): a merge on ``key + [snapshot_column]``: one row per key per
  snapshot day, the latest reading of the day wins, re-runs never duplicate.

Every data commit carries ``tiktok_organic.sync_type``, ``tiktok_organic.run_id`` and row counts in its
commit info (``history()``); merge counts come from delta's own operation metrics.

Retention (``delta_log_retention_days`` = N): ``delta.logRetentionDuration`` and
``delta.deletedFileRetentionDuration`` are both ``interval N days`` (set on create; changed with one
extra commit when the setting changes). ``maintain()`` guarantees that every version committed in the
last N days stays readable (``read(version=...)``, ``read(as_of=...)``). Older versions go away: the data
files a version needs are deleted N days after it was superseded, and its log entry once it is older
than N days and covered by a newer checkpoint. Reading such a version — or ``as_of`` a time before the
oldest readable commit, which delta-rs would silently clamp — raises ``VersionNotAvailableError``.
Without ``maintain()`` nothing is vacuumed (delta's own hook only trims expired logs at its
100-commit checkpoints).

Concurrency: merges/overwrites retry ``CommitFailedError`` (re-open, exponential backoff + jitter,
``commit_retry_attempts``); merges are idempotent on keys. A streamed overwrite from a bare reader
cannot be replayed and fails on the first conflict (pass a callable returning a fresh reader to get
retries). Memory of a streamed overwrite: the catalog keeps the key column and one Parquet row group
(``delta_stream_writer``; delta-rs's own writer would hold the whole stream). S3 needs no lock service: delta-rs
>= 1.6.1 commits with conditional put (``If-None-Match``); the DynamoDB log store was removed. For
MinIO/R2 set ``storage_options={"aws_conditional_put": "etag"}``.

Types: timestamps are stored as ``timestamp[us, tz=UTC]`` (other zones converted, ns truncated to us);
naive timestamps are rejected because delta-rs would create a ``timestampNtz`` column. Other types
(string ids, int64 counters) are written as given. Reads use ``to_pyarrow_dataset().to_table(
use_threads=False)`` because the threaded scan aborts the interpreter at exit on some machines.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from typing import Any, TypeVar

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import create_table_with_add_actions
from pydantic import PrivateAttr, field_validator

from . import delta_maintenance as maint
from .delta_maintenance import (  # noqa: F401  (errors re-exported for callers)
    META_PREFIX,
    META_RUN_ID,
    META_SYNC_TYPE,
    CatalogConfigError,
    CommitConflictError,
    DeltaCatalogError,
    VersionNotAvailableError,
)
from .delta_stream_writer import ROWS_PER_GROUP, write_files

SYNC_FULL, SYNC_INCREMENTAL, SYNC_SNAPSHOT = "full", "incremental", "snapshot"
SYNC_TYPES = (SYNC_FULL, SYNC_INCREMENTAL, SYNC_SNAPSHOT)
FULL_SYNC_APP_ID = "tiktok_organic.full_sync"  # Delta app transaction; its version = epoch ms of the full sync
DEFAULT_ROOT = os.path.join("data", "lakehouse")
ROOT_ENV = "TIKTOK_DELTA_ROOT"
STREAMED_MERGE_MIN_ROWS = 200_000  # below this, streamed_exec=False lets delta prune files (≈10x faster)

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_REMOTE_SCHEMES = {"s3": "aws", "s3a": "aws", "gs": "gcs", "gcs": "gcs",
                   "az": "azure", "abfs": "azure", "abfss": "azure", "azure": "azure", "adl": "azure"}
_ENV_EXACT = {
    "aws": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
            "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT", "AWS_ALLOW_HTTP", "AWS_PROFILE",
            "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "AWS_CONDITIONAL_PUT", "AWS_COPY_IF_NOT_EXISTS",
            "AWS_S3_ALLOW_UNSAFE_RENAME", "AWS_IMDSV1_FALLBACK", "AWS_METADATA_ENDPOINT"},
    "gcs": {"GOOGLE_APPLICATION_CREDENTIALS"},
    "azure": {"AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST",
              "AZURE_FEDERATED_TOKEN_FILE", "AZURE_USE_AZURE_CLI", "AZURE_MSI_ENDPOINT"},
}
_ENV_PREFIXES = {"aws": (), "gcs": ("GOOGLE_SERVICE_ACCOUNT",), "azure": ("AZURE_STORAGE_",)}
_SECRET_KEY_RE = re.compile(r"secret|token|password|access_key|account_key|sas|credential|service_account",
                            re.IGNORECASE)
_RESERVED_COMMIT_KEYS = {"timestamp", "operation", "operationParameters", "operationMetrics", "version",
                         "readVersion", "isBlindAppend", "clientVersion", "engineInfo", "userId", "userName"}

_log = dg.get_dagster_logger("tiktok_organic.delta_catalog")
T = TypeVar("T")


@dataclass
class WriteResult:
    """Outcome of one write; counts are None when they cannot be known (e.g. overwrite without key)."""

    uri: str
    version: int
    rows_written: int
    inserted: int | None
    updated: int | None
    deleted: int | None
    unchanged: int | None
    sync_type: str
    duration_s: float
    commit_attempts: int = 1

    def as_metadata(self) -> dict[str, Any]:
        """Plain dict for Dagster ``MaterializeResult(metadata=...)`` (None values dropped)."""
        return {f"delta/{k}": v for k, v in asdict(self).items() if v is not None and k != "uri"}


# Bounded row groups in the files a merge rewrites (delta-rs would write one per file, and a later read would
# hold the whole table at once). Compression must be restated: WriterProperties without it writes
# uncompressed files, 3.7x the size of delta-rs's default Snappy (measured on video rows).
MERGE_WRITER = WriterProperties(max_row_group_size=ROWS_PER_GROUP, compression="SNAPPY")


def _at_least(column: str, value: Any, or_null: bool = False) -> str | None:
    """Merge-predicate condition ``t.column >= value`` for a date or timezone-aware timestamp (the types whose
    ISO spelling delta-rs compares exactly); None for anything else, which merges unpruned."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        literal = value.astimezone(timezone.utc).isoformat()
    elif isinstance(value, date) and not isinstance(value, datetime):
        literal = value.isoformat()
    else:
        return None
    condition = f"t.`{column}` >= '{literal}'"
    return f"({condition} OR t.`{column}` IS NULL)" if or_null else condition


def validate_name(value: str, setting: str, *, allow_empty: bool = False) -> str:
    """Path components must be plain names so no setting can escape the lakehouse root."""
    if allow_empty and value == "":
        return value
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise CatalogConfigError(
            f"{setting} {value!r} is not a valid name: use letters, digits, '_' or '-' "
            "(not empty, no '..', '/', '\\' or spaces)"
        )
    return value


def _scheme(uri: str) -> str:
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]+)://", uri)
    return match.group(1).lower() if match else ""


def _check_storage_options(options: dict[str, str]) -> dict[str, str]:
    for key in options:
        if _SECRET_KEY_RE.search(key):
            raise CatalogConfigError(
                f"storage_options key {key!r} looks like a credential: credentials are never taken from "
                f"config; export it as an environment variable (e.g. {key.upper()}) instead"
            )
    return options


class DeltaCatalog(dg.ConfigurableResource):
    """Where the TikTok Delta tables live and the only code that writes them (see module docstring)."""

    root_uri: str | None = None
    delta_log_retention_days: int = 30
    storage_options: dict[str, str] = {}
    commit_retry_attempts: int = 6
    commit_retry_backoff_seconds: float = 0.25
    checkpoint_every_commits: int = 10
    compact_min_small_files: int = 16
    small_file_bytes: int = 32 * 1024 * 1024

    _run_id: str | None = PrivateAttr(default=None)

    @field_validator("delta_log_retention_days")
    @classmethod
    def _check_retention(cls, value: int) -> int:
        if type(value) is int and value < 1:  # EnvVar-backed values are re-validated at run time
            raise ValueError(f"delta_log_retention_days must be an integer >= 1 (days), got {value}")
        return value

    @field_validator("commit_retry_attempts", "checkpoint_every_commits", "compact_min_small_files")
    @classmethod
    def _check_positive(cls, value: int) -> int:
        if type(value) is int and value < 1:
            raise ValueError(f"must be an integer >= 1, got {value}")
        return value

    @field_validator("storage_options")
    @classmethod
    def _check_options(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            return _check_storage_options(value)
        except CatalogConfigError as exc:
            raise ValueError(str(exc)) from None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run_id

    # ----------------------------------------------------------------------------------- layout
    def resolved_root(self) -> str:
        """Absolute local path or remote URI of the lakehouse root (read at call time)."""
        root = self.root_uri or os.environ.get(ROOT_ENV) or DEFAULT_ROOT
        scheme = _scheme(root)
        if scheme == "file":
            root = root[len("file://"):]
        elif scheme:
            if scheme not in _REMOTE_SCHEMES:
                raise CatalogConfigError(
                    f"root_uri {root!r} has unsupported scheme '{scheme}': use a local path, file://, "
                    "s3://, gs://, az:// or abfss://"
                )
            return root.rstrip("/")
        return os.path.abspath(os.path.expanduser(root))

    def table_uri(self, layer: str, folder: str, table_name: str, prefix: str = "") -> str:
        validate_name(layer, "layer")
        validate_name(folder, "folder")
        validate_name(prefix, "table_prefix", allow_empty=True)
        validate_name(table_name, "table_name")
        return f"{self.resolved_root()}/{layer}/{folder}/{prefix}{table_name}"

    def storage_options_for(self, uri: str) -> dict[str, str] | None:
        """Config options plus credentials from os.environ for the uri's cloud; None for local paths."""
        kind = _REMOTE_SCHEMES.get(_scheme(uri))
        if kind is None:
            return None
        options = {k: v for k, v in os.environ.items()
                   if k in _ENV_EXACT[kind] or k.startswith(_ENV_PREFIXES[kind]) and _ENV_PREFIXES[kind]}
        options = {k.lower(): v for k, v in options.items()}
        options.update({k.lower(): str(v) for k, v in _check_storage_options(self.storage_options).items()})
        return options

    # ------------------------------------------------------------------------------------ reads
    def exists(self, uri: str) -> bool:
        return DeltaTable.is_deltatable(uri, self.storage_options_for(uri))

    def version(self, uri: str) -> int | None:
        return self._open(uri).version() if self.exists(uri) else None

    def schema(self, uri: str) -> pa.Schema:
        """Arrow schema of the latest version."""
        return self._open(uri).to_pyarrow_dataset().schema

    def describe(self, uri: str) -> tuple[int, pa.Schema]:
        """Row count and schema of the latest version from one log read (a sync's metadata needs both)."""
        dt = self._open(uri)
        return self._row_count(dt), dt.to_pyarrow_dataset().schema

    def row_count(self, uri: str, version: int | None = None) -> int:
        """Rows in a version from the log's file statistics; scans only if a file lacks stats."""
        return self._row_count(self._open(uri, version))

    @staticmethod
    def _row_count(dt: DeltaTable) -> int:
        counts = pa.table(dt.get_add_actions(flatten=False)).column("num_records").to_pylist()
        if any(c is None for c in counts):
            return dt.to_pyarrow_dataset().count_rows(use_threads=False)
        return int(sum(counts))

    def read(self, uri: str, *, version: int | None = None, as_of: datetime | None = None,
             columns: list[str] | None = None, filter: pc.Expression | None = None) -> pa.Table:  # noqa: A002
        """Read a table (optionally an older version); raises VersionNotAvailableError outside retention.

        ``filter`` prunes files by their statistics before reading rows (e.g. recent snapshot dates)."""
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
            loaded = next((e for e in maint.iter_history(self._open(uri))
                           if e["version"] == dt.version()), None)
            if loaded is None or maint.commit_time(loaded) > as_of:  # delta-rs clamps silently
                oldest = f" (v{dt.version()}, {maint.commit_time(loaded).isoformat()})" if loaded else ""
                raise VersionNotAvailableError(
                    f"as_of {as_of.isoformat()} is before the oldest retained commit of {uri}{oldest}")
        try:
            return dt.to_pyarrow_dataset().to_table(columns=columns, filter=filter, use_threads=False)
        except FileNotFoundError as exc:
            raise VersionNotAvailableError(
                f"data files of version {dt.version()} of {uri} were removed by vacuum (outside the "
                f"{self.delta_log_retention_days}-day retention)"
            ) from exc

    def read_keys(self, uri: str, key: str, values: pa.Array, *, prune: pc.Expression | None = None) -> pa.Table:
        """The stored rows whose ``key`` is in ``values``, filtered batch by batch so a large table is never
        held whole. (Not a dataset filter expression: delta's file-statistics guarantees can be typed
        string_view, which pyarrow 26 cannot compare with a string column.)

        ``prune`` (e.g. ``create_time >= t``, which every wanted row satisfies) lets the scan skip files and
        row groups by their statistics, so looking up a recent window does not read the whole table."""
        dataset = self._open(uri).to_pyarrow_dataset()
        batches = [b.filter(pc.is_in(b.column(key), value_set=values))
                   for b in dataset.to_batches(filter=prune, use_threads=False)]
        return pa.Table.from_batches(batches, schema=dataset.schema)

    def max_value(self, uri: str, column: str) -> Any:
        """Largest value of ``column``, from the log's per-file statistics when every file has them (no data
        file is read); otherwise from the column itself. None for an empty table."""
        dt = self._open(uri)
        files = pa.table(dt.get_add_actions(flatten=True))
        stat = f"max.{column}"
        if files.num_rows and stat in files.column_names and files.column(stat).null_count == 0:
            return pc.max(files.column(stat)).as_py()
        known = dt.to_pyarrow_dataset().to_table(columns=[column], use_threads=False)
        return pc.max(known.column(column)).as_py()

    def file_ranges(self, uri: str, column: str) -> list[tuple[Any, Any]] | None:
        """(min, max) of ``column`` per data file from the log's statistics; None if a file lacks them."""
        files = pa.table(self._open(uri).get_add_actions(flatten=True))
        lo, hi = f"min.{column}", f"max.{column}"
        if lo not in files.column_names or hi not in files.column_names:
            return None if files.num_rows else []
        mins, maxs = files.column(lo), files.column(hi)
        if mins.null_count or maxs.null_count:
            return None
        return list(zip(mins.to_pylist(), maxs.to_pylist(), strict=True))

    def history(self, uri: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits newest first: version, timestamp (UTC), operation, sync_type, run_id, counts, metadata."""
        return [maint.normalize_history_entry(e) for e in self._open(uri).history(limit)
                if int(e.get("version", -1)) >= 0]

    def last_commit_time(self, uri: str, sync_type: str | None = None) -> datetime | None:
        """UTC time of the newest data commit (of ``sync_type`` if given); None if there is none."""
        if sync_type is not None and sync_type not in SYNC_TYPES:
            raise ValueError(f"sync_type must be one of {SYNC_TYPES}, got {sync_type!r}")
        if not self.exists(uri):
            return None
        dt = self._open(uri)
        for entry in maint.iter_history(dt):
            found = entry.get(META_SYNC_TYPE)
            if found is not None and (sync_type is None or found == sync_type):
                return maint.commit_time(entry)
        if sync_type == SYNC_FULL:
            # Full syncs are also recorded as a Delta app transaction, which survives log cleanup
            # (checkpoints keep `txn` actions): a log retention shorter than the full-sync period must not
            # make the last full sync look like "never".
            marker = dt.transaction_version(FULL_SYNC_APP_ID)
            if marker is not None:
                return datetime.fromtimestamp(marker / 1000, timezone.utc)
        return None

    # ----------------------------------------------------------------------------------- writes
    def overwrite(self, uri: str,
                  data: pa.Table | pa.RecordBatchReader | Callable[[], pa.RecordBatchReader], *,
                  key: list[str] | None, commit_info: dict[str, str]) -> WriteResult:
        """Replace the table's rows and schema in one commit; a RecordBatchReader is streamed.

        A callable returning a fresh reader is a replayable stream: it is called once per commit attempt,
        so a commit race lost to another writer is retried like a Table. A bare reader can be consumed only
        once, so its commit is not retried."""
        started = time.monotonic()
        meta = self._commit_metadata(commit_info, SYNC_FULL)
        replay = None if isinstance(data, (pa.Table, pa.RecordBatchReader)) or not callable(data) else data
        first = replay() if replay is not None else data
        if not isinstance(first, (pa.Table, pa.RecordBatchReader)):
            raise TypeError(f"overwrite data must be a pyarrow Table or RecordBatchReader, got {type(first)}")
        schema = maint.normalize_schema(first.schema)
        keys = maint.check_keys(schema, key or [], "key")
        streamed = isinstance(first, pa.RecordBatchReader)
        table = None if streamed else maint.cast_to(first, schema)
        unused = [first]  # the source of the first attempt; later attempts replay
        self._prepare_local(uri)

        def attempt() -> tuple[int, int, maint.Counts]:
            dt = self._open_or_none(uri)
            if dt is not None:
                maint.ensure_retention(dt, self.delta_log_retention_days, self._maint_props())
            before = maint.previous_keys(dt, keys)
            source = unused.pop() if unused else (replay() if replay is not None else first)
            txn = Transaction(FULL_SYNC_APP_ID, time.time_ns() // 1_000_000)
            if streamed:
                return self._overwrite_stream(uri, dt, maint.KeyTap(source, schema, keys), before, meta, txn)
            after = maint.unique_keys([table], keys) if keys else None
            counts = maint.key_diff(before, after, dt is None, table.num_rows)
            # writing through the loaded table saves a log replay and keeps the key diff exact: a commit
            # by someone else after `dt` was loaded becomes a conflict (retried) instead of a wrong diff
            target: Any = dt if dt is not None else uri
            write_deltalake(target, table, mode="overwrite", schema_mode="overwrite",
                            configuration=None if dt else self._retention_config(),
                            storage_options=self.storage_options_for(uri),
                            commit_properties=CommitProperties(
                                custom_metadata={**meta, **maint.count_metadata(table.num_rows, *counts)},
                                app_transactions=[txn]))
            version = dt.version() if dt is not None else self._open(uri).version()
            return version, table.num_rows, counts

        (version, rows, (ins, upd, dele)), attempts = self._with_retry(
            "overwrite", uri, attempt, attempts=1 if streamed and replay is None else None)
        return WriteResult(uri, version, rows, ins, upd, dele, 0 if ins is not None else None, SYNC_FULL,
                           round(time.monotonic() - started, 4), attempts)

    def _overwrite_stream(self, uri: str, dt: DeltaTable | None, tap: maint.KeyTap, before: pa.Array | None,
                          meta: dict[str, Any], txn: Transaction) -> tuple[int, int, maint.Counts]:
        """Parquet files written as the stream arrives (see delta_stream_writer), then one commit that
        replaces every current file: the stream's counts are known before it, so they go in its info."""
        try:
            actions = write_files(uri, self.storage_options_for(uri), tap.schema, tap.batches())
        except Exception:
            if tap.error is not None:
                raise tap.error from None  # the source's own error; the table is untouched
            raise
        after = maint.unique_keys(tap.key_chunks, tap.keys) if tap.keys else None
        counts = maint.key_diff(before, after, dt is None, tap.rows)
        props = CommitProperties(custom_metadata={**meta, **maint.count_metadata(tap.rows, *counts)},
                                 app_transactions=[txn])
        if dt is not None:
            dt.create_write_transaction(actions, mode="overwrite", schema=tap.schema, commit_properties=props)
        else:
            self._create_with(uri, tap.schema, actions, props)
        # (unlike write_deltalake, create_write_transaction does not move `dt` to the new version)
        return self._open(uri).version(), tap.rows, counts

    def _create_with(self, uri: str, schema: pa.Schema, actions: list[Any], props: CommitProperties) -> None:
        try:
            create_table_with_add_actions(uri, DeltaSchema.from_arrow(schema), actions, mode="error",
                                          configuration=self._retention_config(),
                                          storage_options=self.storage_options_for(uri), commit_properties=props)
        except DeltaError as exc:
            if "already exists" not in str(exc):
                raise
            raise CommitFailedError(f"table was created concurrently: {exc}") from exc

    def merge(self, uri: str, data: pa.Table, *, key: list[str], commit_info: dict[str, str],
              update_only_if_changed: bool = True, stored_at_least: tuple[str, Any] | None = None
              ) -> WriteResult:
        """Upsert on ``key`` in one commit (see module docstring for the exact semantics).

        ``stored_at_least=(column, value)``: every stored row that can match has ``column >= value`` or a null
        there (e.g. a video's ``create_time``, which never changes). The merge then skips older files by their
        statistics instead of scanning the whole table."""
        prune = _at_least(*stored_at_least, or_null=True) if stored_at_least is not None else None
        return self._merge(uri, data, key, commit_info, update_only_if_changed, SYNC_INCREMENTAL, prune=prune)

    def snapshot_merge(self, uri: str, data: pa.Table, *, key: list[str],
                       snapshot_column: str = "snapshot_date", commit_info: dict[str, str]) -> WriteResult:
        """One row per key per snapshot (e.g. day): merge on ``key + [snapshot_column]``, latest wins."""
        if snapshot_column not in data.schema.names:
            raise CatalogConfigError(f"snapshot_column {snapshot_column!r} is not a column of the data")
        keys = [*key, *([snapshot_column] if snapshot_column not in key else [])]
        # Rows can only match snapshots at least as new as the batch's oldest: said in the predicate, it lets
        # the merge skip older files by their statistics, so a daily snapshot does not scan a year of history
        # (0.30 -> 0.03 s at 365 days x 5,000 rows measured).
        oldest = pc.min(data.column(snapshot_column)).as_py() if data.num_rows else None
        prune = _at_least(snapshot_column, oldest) if oldest is not None else None
        return self._merge(uri, data, keys, commit_info, True, SYNC_SNAPSHOT, prune=prune)

    def maintain(self, uri: str) -> dict[str, Any]:
        """Retention properties, compaction when many small files, full vacuum, checkpoint, log cleanup."""
        return maint.maintain_table(
            lambda: self._open(uri), uri=uri, storage_options=self.storage_options_for(uri),
            retention_days=self.delta_log_retention_days, commit_properties=self._maint_props(),
            checkpoint_every=self.checkpoint_every_commits,
            compact_min_small_files=self.compact_min_small_files, small_file_bytes=self.small_file_bytes,
        )

    # ---------------------------------------------------------------------------------- helpers
    def _merge(self, uri: str, data: pa.Table, key: list[str], commit_info: dict[str, str],
               only_if_changed: bool, sync_type: str, prune: str | None = None) -> WriteResult:
        """``prune``: a condition on target columns (alias ``t``) that every row able to match satisfies."""
        started = time.monotonic()
        meta = self._commit_metadata(commit_info, sync_type)
        if isinstance(data, pa.RecordBatchReader):
            data = data.read_all()
        if not isinstance(data, pa.Table):
            raise TypeError(f"merge data must be a pyarrow Table, got {type(data)}")
        schema = maint.normalize_schema(data.schema)
        keys = maint.check_keys(schema, key, "key")
        if not keys:
            raise CatalogConfigError("key must name at least one column for merge")
        source = maint.dedupe_last(maint.cast_to(data, schema), keys)
        maint.reject_null_keys(source, keys)
        n = source.num_rows
        self._prepare_local(uri)

        def attempt() -> tuple[int, int, int]:
            dt = self._open_or_none(uri)
            if dt is None:
                try:
                    write_deltalake(uri, source, mode="error", configuration=self._retention_config(),
                                    storage_options=self.storage_options_for(uri),
                                    commit_properties=CommitProperties(
                                        custom_metadata={**meta, **maint.count_metadata(n, n, 0, 0)}))
                    return self._open(uri).version(), n, 0
                except DeltaError as exc:
                    if "already exists" not in str(exc):
                        raise
                    raise CommitFailedError(f"table was created concurrently: {exc}") from exc
            maint.ensure_retention(dt, self.delta_log_retention_days, self._maint_props())
            target = {f.name for f in dt.schema().fields}
            cols = {f"`{c}`": f"s.`{c}`" for c in source.column_names}
            on = " AND ".join([*(f"t.`{k}` = s.`{k}`" for k in keys), *([prune] if prune else [])])
            merger = dt.merge(source, on,
                              source_alias="s", target_alias="t", merge_schema=True,
                              streamed_exec=n >= STREAMED_MERGE_MIN_ROWS,
                              writer_properties=MERGE_WRITER,
                              commit_properties=CommitProperties(
                                  custom_metadata={**meta, "tiktok_organic.rows_written": n}))
            predicate = maint.change_predicate(source.column_names, keys, target) if only_if_changed else None
            updates = {c: v for c, v in cols.items() if c.strip("`") not in keys}
            if updates and predicate != "":
                merger = merger.when_matched_update(updates, predicate=predicate)
            metrics = merger.when_not_matched_insert(cols).execute()
            inserted, updated = metrics["num_target_rows_inserted"], metrics["num_target_rows_updated"]
            return dt.version(), int(inserted), int(updated)

        (version, ins, upd), attempts = self._with_retry(sync_type, uri, attempt)
        return WriteResult(uri, version, n, ins, upd, 0, n - ins - upd, sync_type,
                           round(time.monotonic() - started, 4), attempts)

    def _with_retry(self, what: str, uri: str, fn: Callable[[], T], attempts: int | None = None
                    ) -> tuple[T, int]:
        limit = attempts or self.commit_retry_attempts
        for i in range(1, limit + 1):
            try:
                return fn(), i
            except CommitFailedError as exc:
                if i == limit:
                    hint = ("a streamed overwrite cannot be replayed; re-run the step" if limit == 1 else
                            "serialize writers of this table (e.g. a Dagster pool) or re-run")
                    raise CommitConflictError(f"{what} of {uri} lost the commit race {i} time(s) to "
                                              f"concurrent writers; {hint}: {exc}") from exc
                delay = self.commit_retry_backoff_seconds * 2 ** (i - 1) * random.uniform(0.5, 1.5)
                _log.warning(f"{what} of {uri}: commit conflict (attempt {i}/{limit}), retrying in "
                             f"{delay:.2f}s: {str(exc).splitlines()[0]}")
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _open(self, uri: str, version: int | None = None) -> DeltaTable:
        return DeltaTable(uri, version=version, storage_options=self.storage_options_for(uri))

    def _open_or_none(self, uri: str) -> DeltaTable | None:
        try:
            return self._open(uri)
        except TableNotFoundError:
            return None

    def _prepare_local(self, uri: str) -> None:
        if not _scheme(uri) or _scheme(uri) == "file":
            os.makedirs(uri.removeprefix("file://"), exist_ok=True)

    def _retention_config(self) -> dict[str, str]:
        try:
            return maint.retention_properties(self.delta_log_retention_days)
        except ValueError as exc:
            raise CatalogConfigError(str(exc)) from None

    def _maint_props(self) -> CommitProperties:
        self._retention_config()  # validate before any maintenance commit
        return CommitProperties(custom_metadata={META_PREFIX + "operation": "maintenance",
                                                 META_RUN_ID: self._run_id or "none"})

    def _commit_metadata(self, commit_info: dict[str, str], sync_type: str) -> dict[str, Any]:
        self._retention_config()
        meta: dict[str, Any] = {META_SYNC_TYPE: sync_type, META_RUN_ID: self._run_id or "none"}
        for k, v in (commit_info or {}).items():
            if not isinstance(k, str) or not k or k in _RESERVED_COMMIT_KEYS:
                raise CatalogConfigError(f"commit_info key {k!r} is empty or reserved by Delta")
            if not isinstance(v, (str, int, float, bool)):
                raise CatalogConfigError(f"commit_info[{k!r}] must be a string or number, got {type(v)}")
            meta[k] = v
        if meta[META_SYNC_TYPE] not in SYNC_TYPES:
            raise CatalogConfigError(f"commit_info {META_SYNC_TYPE} must be one of {SYNC_TYPES}")
        return meta
