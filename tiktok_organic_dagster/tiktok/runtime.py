"""A client's per-instance state, built on first use: HTTP session, rate budgets, token manager, counters."""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests
from requests.adapters import HTTPAdapter

from tiktok_organic_dagster.tiktok.rate_budget import RateBudget
from tiktok_organic_dagster.tiktok.stats import DATA_ENDPOINTS, Counters
from tiktok_organic_dagster.tiktok.token_store import open_token_store
from tiktok_organic_dagster.tiktok.tokens import TokenManager

if TYPE_CHECKING:
    from tiktok_organic_dagster.tiktok.client import TikTokClient


class Runtime:
    """Per-instance state built on first use: session, budgets, token manager, counters."""

    def __init__(self, client: TikTokClient) -> None:
        self.session = requests.Session()
        pool = max(client.query_parallelism, client.paging_parallelism, 1) + 2
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.base = client.api_base_url.rstrip("/")
        # Proxy and CA-bundle settings from the environment are resolved once for the API host: with
        # trust_env, requests re-scans os.environ (and ~/.netrc, whose Basic auth would replace our Bearer
        # header) on every call — about 0.3 ms per request, a third of a video/list page on a fast link.
        env = self.session.merge_environment_settings(self.base + "/", {}, None, None, None)
        self.session.trust_env = False
        self.session.proxies.update(env["proxies"])
        self.session.verify = env["verify"]
        self.timeout = client.request_timeout_seconds
        self.counters = Counters()
        # Pad the window by min(1 s, 10%): we stamp at send time, the server counts at arrival, and
        # latency jitter between two requests a window apart would otherwise still trip its limit.
        window = client.rate_window_seconds + min(1.0, 0.1 * client.rate_window_seconds)
        self.budgets = {ep: RateBudget(client.requests_per_minute, window, paced=client.rate_pacing)
                        for ep in DATA_ENDPOINTS}
        self.store = open_token_store(client.token_store_path)  # local file or object-store prefix
        self.tokens = TokenManager(self.store, client.token_store_key, client.refresh_token,
                                   client._post_token, env_var=client.refresh_token_env,
                                   on_refresh=client._count_refresh)
        self.headers_for: tuple[str, dict[str, str]] = ("", {})
        self.proven_tokens: set[str] = set()  # access tokens the API has accepted (a handful per run)
