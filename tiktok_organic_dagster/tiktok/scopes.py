"""Which scope a refused request lacked, named by field, so the error says exactly what to re-authorize."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tiktok_organic_dagster.tiktok.errors import MissingScopeError, TikTokApiError
from tiktok_organic_dagster.tiktok.streams import BASIC, USER_INFO, VIDEO_LIST


def scope_error(endpoint: str, fields: Sequence[str], err: TikTokApiError,
                granted_scopes: Callable[[], list[str] | None],
                current_scopes: Callable[[set[str]], set[str]]) -> MissingScopeError:
    """``granted_scopes`` reads the stored grant (no request); ``current_scopes`` refreshes it once when the
    stored grant lists every scope TikTok just refused (consent changed after the token was issued)."""
    if endpoint == "user_info":
        table = USER_INFO.scopes
        needed = {f: table[f] for f in fields if f in table}
    else:
        needed = dict.fromkeys(fields, VIDEO_LIST)
    required = list(dict.fromkeys(needed.values())) or [VIDEO_LIST if endpoint != "user_info" else BASIC]
    granted = set(granted_scopes() or ())
    if len(required) > 1 and granted and all(s in granted for s in required):
        granted = current_scopes(granted)
    missing = [s for s in required if s not in granted] or required
    # Most specific first: basic is rarely the one missing when profile/stats fields were asked for.
    missing.sort(key=lambda s: s == BASIC)
    cause_fields = tuple(f for f, s in needed.items() if s in missing)
    return MissingScopeError(missing[0], scopes=tuple(missing), fields=cause_fields, code=err.code,
                             api_message=err.api_message, log_id=err.log_id, status=err.status)
