"""The TikTok Open API v2 client: plain Python, no Dagster.

``client`` (requests, retries, rate budget), ``tokens`` and ``token_store`` (rotating OAuth tokens),
``responses`` (what each response means), ``paging`` (video/list cursor walk), ``streams`` (the stream
registry: fields, types, scopes), ``errors`` and ``redaction``.
"""

from tiktok_organic_dagster.tiktok.client import TikTokClient
from tiktok_organic_dagster.tiktok.errors import (
    CursorStuckError,
    MissingScopeError,
    RateLimitedError,
    ReauthorizationRequired,
    TikTokApiError,
    TikTokConfigError,
    TikTokError,
    TikTokTransportError,
    TokenStoreError,
)
from tiktok_organic_dagster.tiktok.query import QueryResult
from tiktok_organic_dagster.tiktok.slicing import SlicingRejected
from tiktok_organic_dagster.tiktok.stats import ClientStats

__all__ = [
    "ClientStats",
    "CursorStuckError",
    "MissingScopeError",
    "QueryResult",
    "RateLimitedError",
    "SlicingRejected",
    "ReauthorizationRequired",
    "TikTokApiError",
    "TikTokClient",
    "TikTokConfigError",
    "TikTokError",
    "TikTokTransportError",
    "TokenStoreError",
]
