"""Request accounting of one client: streams sharing a client each report their own endpoints' requests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

DATA_ENDPOINTS = ("user_info", "video_list", "video_query")
ENDPOINTS = (*DATA_ENDPOINTS, "oauth_token")


@dataclass(frozen=True)
class ClientStats:
    """Snapshot of request accounting; the ``*_by_endpoint`` dicts are keyed by endpoint (incl. ``oauth_token``),
    so streams sharing one client can each report their own requests."""

    requests: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    retries: int = 0
    rate_limited: int = 0
    refreshes: int = 0
    total_requests: int = 0
    retries_by_endpoint: dict[str, int] = field(default_factory=dict)
    rate_limited_by_endpoint: dict[str, int] = field(default_factory=dict)


class Counters:
    """Thread-safe mutable counters behind :class:`ClientStats`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        self.retries: dict[str, int] = dict.fromkeys(self.requests, 0)
        self.rate_limited: dict[str, int] = dict.fromkeys(self.requests, 0)
        self.pages = self.refreshes = 0

    def snapshot(self) -> ClientStats:
        with self.lock:
            return ClientStats(dict(self.requests), self.pages, sum(self.retries.values()),
                               sum(self.rate_limited.values()), self.refreshes, sum(self.requests.values()),
                               dict(self.retries), dict(self.rate_limited))
