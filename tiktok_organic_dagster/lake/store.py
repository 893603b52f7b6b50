"""Where tables live and what every write shares: settings, layout, storage options, opening tables, the
commit metadata each commit carries.

Layout: ``<root>/<layer>/<folder>/<prefix><table_name>``; ``root_uri`` defaults to ``./data/lakehouse``.
``s3://``, ``gs://``, ``az://``/``abfs(s)://`` roots take credentials from the environment at call time
(``AWS_*``, ``GOOGLE_*``, ``AZURE_*``); only non-secret options (region, endpoint, timeouts) may be passed as
``storage_options``.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.fs import DeltaStorageHandler

from tiktok_organic_dagster.lake.errors import CatalogConfigError, CommitConflictError
from tiktok_organic_dagster.lake.maintenance import retention_properties
from tiktok_organic_dagster.lake.partitions import Partition

SYNC_FULL, SYNC_INCREMENTAL, SYNC_SNAPSHOT = "full", "incremental", "snapshot"
SYNC_TYPES = (SYNC_FULL, SYNC_INCREMENTAL, SYNC_SNAPSHOT)
DEFAULT_ROOT = os.path.join("data", "lakehouse")
_RESERVED_COMMIT_KEYS = {"timestamp", "operation", "operationParameters", "operationMetrics", "version",
                         "readVersion", "isBlindAppend", "clientVersion", "engineInfo", "userId", "userName"}
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
_log = logging.getLogger(__name__)
T = TypeVar("T")
_SECRET_KEY_RE = re.compile(r"secret|token|password|access_key|account_key|sas|credential|service_account",
                            re.IGNORECASE)


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


def _positive(value: int, setting: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CatalogConfigError(f"{setting} must be an integer >= 1, got {value!r}")
    return value


class TableStore:
    """Settings and the low-level operations every read and write of the catalog shares.

    ``metadata_prefix`` prefixes the keys this catalog writes into each commit's info (sync type, run id,
    counts); ``run_id`` is recorded in each of them.
    """

    def __init__(
        self,
        root_uri: str | None = None,
        *,
        delta_log_retention_days: int = 30,
        storage_options: dict[str, str] | None = None,
        commit_retry_attempts: int = 6,
        commit_retry_backoff_seconds: float = 0.25,
        checkpoint_every_commits: int = 10,
        compact_min_small_files: int = 16,
        small_file_bytes: int = 32 * 1024 * 1024,
        metadata_prefix: str = "lake.",
        run_id: str | None = None,
    ) -> None:
        if isinstance(delta_log_retention_days, bool) or not isinstance(delta_log_retention_days, int) \
                or delta_log_retention_days < 1:
            raise CatalogConfigError(
                f"delta_log_retention_days must be an integer >= 1 (days), got {delta_log_retention_days!r}")
        self.root_uri = root_uri
        self.delta_log_retention_days = delta_log_retention_days
        self.storage_options = _check_storage_options(dict(storage_options or {}))
        self.commit_retry_attempts = _positive(commit_retry_attempts, "commit_retry_attempts")
        self.commit_retry_backoff_seconds = commit_retry_backoff_seconds
        self.checkpoint_every_commits = _positive(checkpoint_every_commits, "checkpoint_every_commits")
        self.compact_min_small_files = _positive(compact_min_small_files, "compact_min_small_files")
        self.small_file_bytes = small_file_bytes
        self.metadata_prefix = metadata_prefix
        self.run_id = run_id

    # ----------------------------------------------------------------------------------- layout
    def resolved_root(self) -> str:
        """Absolute local path or remote URI of the lakehouse root (read at call time)."""
        root = self.root_uri or DEFAULT_ROOT
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

    def check_writable(self) -> None:
        """Write and delete a probe file under the root, so a root that cannot be written fails before any
        work is done (local: the folder is created; object stores: the bucket and credentials are used)."""
        root = self.resolved_root()
        name = f".write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            if not _scheme(root):
                os.makedirs(root, exist_ok=True)
                path = os.path.join(root, name)
                with open(path, "wb"):
                    pass
                os.remove(path)
                return
            handler = DeltaStorageHandler(root, self.storage_options_for(root))
            handler.open_output_stream(name).close()  # an empty object: a put with this root's credentials
            handler.delete_file(name)
        except (OSError, DeltaError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
            raise CatalogConfigError(f"the Delta root {root} cannot be written: {reason[:300]}") from None

    # ----------------------------------------------------------------------------------- low level
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
            return retention_properties(self.delta_log_retention_days)
        except ValueError as exc:
            raise CatalogConfigError(str(exc)) from None

    def _maint_props(self) -> CommitProperties:
        self._retention_config()  # validate before any maintenance commit
        return CommitProperties(custom_metadata={self.metadata_prefix + "operation": "maintenance",
                                                 self.metadata_prefix + "run_id": self.run_id or "none"})

    def _commit_metadata(self, commit_info: dict[str, str], sync_type: str,
                         partition: Partition | None = None) -> dict[str, Any]:
        self._retention_config()
        if sync_type not in SYNC_TYPES:
            raise CatalogConfigError(f"sync_type must be one of {SYNC_TYPES}, got {sync_type!r}")
        meta: dict[str, Any] = {self.metadata_prefix + "sync_type": sync_type,
                                self.metadata_prefix + "run_id": self.run_id or "none"}
        meta.update(_checked_info(commit_info))
        if meta[self.metadata_prefix + "sync_type"] not in SYNC_TYPES:
            raise CatalogConfigError(f"commit_info {self.metadata_prefix}sync_type must be one of {SYNC_TYPES}")
        return {**meta, **(partition.metadata(self.metadata_prefix) if partition is not None else {})}

    def _operation_metadata(self, commit_info: dict[str, str], operation: str,
                            partition: Partition | None = None) -> dict[str, Any]:
        """Commit info of a data commit that is not a sync (e.g. deleting a partition): no sync type, so
        ``last_commit_time`` never mistakes it for one."""
        self._retention_config()
        meta: dict[str, Any] = {self.metadata_prefix + "operation": operation,
                                self.metadata_prefix + "run_id": self.run_id or "none",
                                **_checked_info(commit_info)}
        return {**meta, **(partition.metadata(self.metadata_prefix) if partition is not None else {})}


    def _with_retry(self, what: str, uri: str, fn: Callable[[], T], attempts: int | None = None
                    ) -> tuple[T, int]:
        """Run one commit attempt until it wins the race (re-opened each time by ``fn``), bounded, with
        exponential backoff and jitter; ``(result, attempts)``."""
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
                _log.warning("%s of %s: commit conflict (attempt %d/%d), retrying in %.2fs: %s", what, uri, i,
                             limit, delay, str(exc).splitlines()[0])
                time.sleep(delay)
        raise AssertionError("unreachable")


def _checked_info(commit_info: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (commit_info or {}).items():
        if not isinstance(k, str) or not k or k in _RESERVED_COMMIT_KEYS:
            raise CatalogConfigError(f"commit_info key {k!r} is empty or reserved by Delta")
        if not isinstance(v, (str, int, float, bool)):
            raise CatalogConfigError(f"commit_info[{k!r}] must be a string or number, got {type(v)}")
        out[k] = v
    return out
