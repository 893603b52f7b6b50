"""Delta Lake tables: layout, writes, reads, retention and maintenance, the streamed writer.

Knows nothing about TikTok: the caller names the tables, passes the commit metadata and app ids.
"""

from tiktok_organic_dagster.lake.catalog import DeltaCatalog
from tiktok_organic_dagster.lake.errors import (
    CatalogConfigError,
    CommitConflictError,
    DeltaCatalogError,
    VersionNotAvailableError,
)
from tiktok_organic_dagster.lake.store import SYNC_FULL, SYNC_INCREMENTAL, SYNC_SNAPSHOT, SYNC_TYPES
from tiktok_organic_dagster.lake.writes import WriteResult

__all__ = [
    "SYNC_FULL",
    "SYNC_INCREMENTAL",
    "SYNC_SNAPSHOT",
    "SYNC_TYPES",
    "CatalogConfigError",
    "CommitConflictError",
    "DeltaCatalog",
    "DeltaCatalogError",
    "VersionNotAvailableError",
    "WriteResult",
]
