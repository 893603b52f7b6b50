"""The stream registry: one spec per stream, read by every layer (client scopes, sync, Dagster assets).

Columns are named exactly as the API fields. Ids stay strings (19 digits exceed 2^53), counters are int64,
``create_time`` (Unix seconds in the API) becomes a UTC timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

BASIC, PROFILE, STATS, VIDEO_LIST = "user.info.basic", "user.info.profile", "user.info.stats", "video.list"
ALL_SCOPES = (BASIC, PROFILE, STATS, VIDEO_LIST)


@dataclass(frozen=True)
class StreamSpec:
    """Everything fixed about one stream. ``fields`` maps API field -> (Arrow type, OAuth scope it needs)."""

    name: str
    key: str
    fields: dict[str, tuple[pa.DataType, str]]
    counters: tuple[str, ...]
    endpoints: tuple[str, ...]  # client endpoint names this stream calls
    description: str
    history_description: str
    preview_columns: tuple[str, ...]
    # Lifetime counters that never go down; others (likes, followers) drop legitimately, so checking them
    # would cry wolf.
    monotonic_counters: tuple[str, ...] = ()

    @property
    def types(self) -> dict[str, pa.DataType]:
        return {name: dtype for name, (dtype, _) in self.fields.items()}

    @property
    def scopes(self) -> dict[str, str]:
        return {name: scope for name, (_, scope) in self.fields.items()}


def _fields(scope: str, **types: pa.DataType) -> dict[str, tuple[pa.DataType, str]]:
    return {name: (dtype, scope) for name, dtype in types.items()}


USER_INFO = StreamSpec(
    name="user_info",
    key="open_id",
    fields={
        **_fields(BASIC, open_id=pa.string(), union_id=pa.string(), avatar_url=pa.string(),
                  avatar_url_100=pa.string(), avatar_large_url=pa.string(), display_name=pa.string()),
        **_fields(PROFILE, bio_description=pa.string(), profile_deep_link=pa.string(), is_verified=pa.bool_(),
                  username=pa.string()),
        **_fields(STATS, follower_count=pa.int64(), following_count=pa.int64(), likes_count=pa.int64(),
                  video_count=pa.int64()),
    },
    counters=("follower_count", "following_count", "likes_count", "video_count"),
    endpoints=("user_info",),
    description="The authorized TikTok account: profile and lifetime counters, one row keyed by `open_id`.",
    history_description="One row per account per day with the counters read that day (follower growth TikTok "
    "never returns as history).",
    preview_columns=("open_id", "username", "display_name", "follower_count", "likes_count", "video_count"),
)

VIDEOS = StreamSpec(
    name="videos",
    key="id",
    fields=_fields(
        VIDEO_LIST, id=pa.string(), create_time=TS, title=pa.string(), video_description=pa.string(),
        duration=pa.int64(), height=pa.int64(), width=pa.int64(), cover_image_url=pa.string(),
        share_url=pa.string(), embed_html=pa.string(), embed_link=pa.string(), like_count=pa.int64(),
        comment_count=pa.int64(), share_count=pa.int64(), view_count=pa.int64(),
    ),
    counters=("like_count", "comment_count", "share_count", "view_count"),
    endpoints=("video_list", "video_query"),
    description="Every public video of the account with its counters, keyed by `id` (19-digit string). "
    "INCREMENTAL merges new videos plus a look-back window of recent ones; FULL_TABLE mirrors the source, so "
    "deleted videos disappear.",
    history_description="One row per video per day with the counters read that day (view curves).",
    preview_columns=("id", "create_time", "title", "view_count", "like_count", "comment_count", "share_count"),
    monotonic_counters=("view_count",),
)

STREAMS: dict[str, StreamSpec] = {s.name: s for s in (USER_INFO, VIDEOS)}
STREAM_NAMES = tuple(STREAMS)

USER_FIELDS = USER_INFO.types
USER_COUNTERS = USER_INFO.counters
VIDEO_FIELDS = VIDEOS.types
VIDEO_COUNTERS = VIDEOS.counters
# Fields asked from video/query when refreshing counters of known videos (cheap, no signed URLs).
VIDEO_COUNTER_FIELDS = ("id", *VIDEO_COUNTERS)
