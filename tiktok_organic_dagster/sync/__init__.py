"""What one stream's sync does: fields to records, the page buffer, the blocking checks, the write.

Plain Python, no Dagster: each sync returns a :class:`StreamResult` the Dagster layer reports.
"""

from tiktok_organic_dagster.sync.checks import CheckResult
from tiktok_organic_dagster.sync.common import StreamResult
from tiktok_organic_dagster.sync.errors import ApiFieldError, BatchCheckFailed
from tiktok_organic_dagster.sync.user_info import sync_user_info
from tiktok_organic_dagster.sync.videos import sync_videos

__all__ = ["ApiFieldError", "BatchCheckFailed", "CheckResult", "StreamResult", "sync_user_info", "sync_videos"]
