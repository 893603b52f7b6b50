"""Sandbox configuration, fault switches and the API's field/scope tables.

The tables mirror the TikTok Open API v2 reference (user/info field scopes, Video object fields) so the
sandbox rejects exactly what TikTok would reject.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCOPE_BASIC = "user.info.basic"
SCOPE_PROFILE = "user.info.profile"
SCOPE_STATS = "user.info.stats"
SCOPE_VIDEO_LIST = "video.list"

DEFAULT_SCOPES: tuple[str, ...] = (SCOPE_BASIC, SCOPE_PROFILE, SCOPE_STATS, SCOPE_VIDEO_LIST)

# user/info: field -> scope the token needs (reference §3; profile/stats moved off basic on 2024-02-29).
USER_FIELD_SCOPES: dict[str, str] = {
    "open_id": SCOPE_BASIC,
    "union_id": SCOPE_BASIC,
    "avatar_url": SCOPE_BASIC,
    "avatar_url_100": SCOPE_BASIC,
    "avatar_large_url": SCOPE_BASIC,
    "display_name": SCOPE_BASIC,
    "bio_description": SCOPE_PROFILE,
    "profile_deep_link": SCOPE_PROFILE,
    "is_verified": SCOPE_PROFILE,
    "username": SCOPE_PROFILE,
    "follower_count": SCOPE_STATS,
    "following_count": SCOPE_STATS,
    "likes_count": SCOPE_STATS,
    "video_count": SCOPE_STATS,
}

# Video object fields (reference §6); all need video.list.
VIDEO_FIELDS: tuple[str, ...] = (
    "id",
    "create_time",
    "cover_image_url",
    "share_url",
    "video_description",
    "duration",
    "height",
    "width",
    "title",
    "embed_html",
    "embed_link",
    "like_count",
    "comment_count",
    "share_count",
    "view_count",
    "is_aigc",
)

# With SandboxConfig.missing_field_every=N, every Nth generated video lacks one of these keys (cycling).
MISSING_FIELD_CYCLE: tuple[str, ...] = ("video_description", "title", "embed_link")
# With SandboxConfig.extra_fields, every video carries this undocumented key (new-field tolerance tests).
EXTRA_FIELD_NAME = "is_new_field_x"


@dataclass
class Faults:
    """Fault-injection switches; all off by default.

    ``*_every`` counters share ONE global request counter over token + data requests (admin endpoints
    and unknown paths are not counted). The counter restarts at 0 on ``start()`` of a fresh server and on
    every ``set_faults()``. Request n (1-based) gets fault X when ``X_every > 0 and n % X_every == 0``.
    A stall sleeps and then continues; if several answering faults hit the same n, the first of
    429 > 500 > error_envelope_200 > undecodable answers. Injected faults answer before authentication,
    so they never rotate tokens, consume rate budget or count towards ``invalidate_access_after``.
    """

    status_429_every: int = 0
    retry_after_seconds: float | None = None  # Retry-After header on injected AND real 429s
    status_500_every: int = 0
    error_envelope_200_every: int = 0  # HTTP 200 with error.code="internal_error"
    undecodable_every: int = 0  # HTTP 200, truncated non-JSON body
    stall_every: int = 0
    stall_seconds: float = 0.0  # sleep before answering (to trip client read timeouts)
    short_pages: bool = False  # video/list returns < max_count (sometimes 0) while has_more stays true
    invalidate_access_after: int = 0  # after N served data requests an access token turns invalid (401)
    publish_during_paging_after: int = 0  # after the Nth served video/list page, one new video goes live (once)
    delete_during_paging_after: int = 0  # after the Nth served video/list page, the middle video is deleted (once)
    ignore_custom_cursor: bool = False  # video/list honours only cursors it returned; others read from the top


@dataclass
class SandboxConfig:
    """Sandbox behaviour. Attributes may be changed on a running server (read per request), except the
    data-shaping ones (video_count, seed, anchor_time, missing_field_every, same_second_every, accounts,
    account_names) which apply at construction."""

    video_count: int = 300
    seed: int = 7
    latency_ms: float = 0.0  # added to every token and data request
    rate_limit: int = 600  # per endpoint, sliding window; <= 0 disables the limiter
    rate_window_seconds: float = 60.0
    access_ttl_seconds: int = 86400
    refresh_ttl_seconds: int = 31536000  # fixed from the first issuance of an authorization (no sliding)
    strict_rotation: bool = True  # old refresh token -> invalid_grant
    granted_scopes: tuple[str, ...] = DEFAULT_SCOPES  # checked live, i.e. the user's current consent
    faults: Faults = field(default_factory=Faults)
    # --- additions beyond the contract ---
    # "app": one window per endpoint for all accounts and tokens; "account": per endpoint and account;
    # "token": per endpoint and access token
    rate_limit_scope: str = "app"
    scope_error_code: str = "scope_not_authorized"  # or "scope_permission_missed" (400), both documented
    missing_field_every: int = 0  # every Nth video lacks a documented key (MISSING_FIELD_CYCLE)
    same_second_every: int = 0  # every Nth generated video shares the previous one's second (hidden ms differ)
    extra_fields: bool = False  # add EXTRA_FIELD_NAME to every video
    # The newest generated video is 1-3 h before anchor_time; None -> now floored to the UTC day.
    anchor_time: int | None = None
    # --- several accounts (users) of the one app: each with its own OAuth family, profile and videos ---
    accounts: int = 1  # named account_1 ... account_N unless account_names is given
    account_names: tuple[str, ...] = ()  # explicit names (ACCOUNT_NAME_RE); wins over `accounts`
