"""video/list paging: a cursor walk that must neither stop early nor loop forever.

Short or empty pages never end the listing (TikTok returns them mid-listing); only ``has_more: false``
does. A cursor that does not move without new videos more than a few times raises instead of looping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tiktok_organic_dagster.tiktok.errors import CursorStuckError, TikTokApiError
from tiktok_organic_dagster.tiktok.redaction import client_logger

MAX_STUCK_PAGES = 3
logger = client_logger()


def page_videos(
    fetch: Callable[[dict[str, int]], dict[str, Any]],
    *,
    stop: Callable[[list[dict]], bool] | None = None,
    max_count: int = 20,
) -> Iterator[list[dict]]:
    """Yield each page's *new* videos (ids as str, deduped across pages, empty pages skipped).

    ``fetch(body)`` performs one video/list request and returns its ``data``. Pages until ``has_more`` is
    false or until ``stop(page)`` returns True (that page is still yielded).
    """
    max_count = min(max(int(max_count), 1), 20)
    seen: set[str] = set()
    seen_cursors: set[int] = set()
    cursor: int | None = None
    stuck = 0
    while True:
        body: dict[str, int] = {"max_count": max_count}
        if cursor is not None:
            body["cursor"] = cursor
        data = fetch(body)
        page: list[dict] = []
        for video in data.get("videos") or ():
            raw_id = video.get("id") if isinstance(video, dict) else None
            if raw_id is None:
                logger.warning("video/list returned an item without id; skipped")
                continue
            vid = raw_id if isinstance(raw_id, str) else str(raw_id)
            if vid in seen:
                continue
            seen.add(vid)
            video["id"] = vid
            page.append(video)
        has_more = bool(data.get("has_more"))
        next_cursor = parse_cursor(data.get("cursor")) if has_more else None
        if page:
            yield page
            if stop is not None and stop(page):
                return
        if next_cursor is None:
            return
        if not page and (next_cursor == cursor or next_cursor in seen_cursors):
            stuck += 1
            if stuck >= MAX_STUCK_PAGES:
                raise CursorStuckError(next_cursor, stuck)
        else:
            stuck = 0
        seen_cursors.add(next_cursor)
        cursor = next_cursor


def parse_cursor(value: Any) -> int:
    if value is None or value == "":
        raise TikTokApiError("invalid_response", "video/list says has_more but returned no cursor")
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            raise TikTokApiError("invalid_response",
                                 f"video/list returned a non-numeric cursor {value!r}") from None
