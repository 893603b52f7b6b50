"""Offboarding: ``POST /v2/oauth/revoke/`` ends the account's authorization (TikTok's terms expect an app to
let go of a user who disconnects), so its tokens stop working for everyone, not only for us."""

from __future__ import annotations

import time

import requests

from tiktok_organic_dagster.tiktok.client import TikTokClient
from tiktok_organic_dagster.tiktok.errors import TikTokApiError, TikTokTransportError
from tiktok_organic_dagster.tiktok.responses import Retry

REVOKE_PATH = "/v2/oauth/revoke/"


def _body(resp: requests.Response) -> dict:
    try:
        doc = resp.json() if resp.content.strip() else {}
    except ValueError:
        return {"error": f"http_{resp.status_code}", "error_description": "non-JSON revoke response"}
    return doc if isinstance(doc, dict) else {}


def revoke(client: TikTokClient) -> None:
    """Revoke with the account's access token (refreshed first if it is stale: the rotated refresh token is
    stored as on any refresh). 429, 5xx and network errors are retried ``max_retries`` times."""
    rt = client._rt()
    token = rt.tokens.access_token()
    form = {"client_key": client.client_id, "client_secret": client.client_secret, "token": token}
    last = ""
    for attempt in range(client.max_retries + 1):
        resp = client._send(rt, "oauth_token", "POST", rt.base + REVOKE_PATH, data=form,
                            headers={"Cache-Control": "no-cache"})
        if isinstance(resp, Retry):
            last = resp.message
        else:
            doc = _body(resp)
            error = doc.get("error")
            code = error.get("code") if isinstance(error, dict) else error
            if resp.status_code < 300 and code in (None, "", "ok"):
                return
            desc = str(doc.get("error_description") or (error.get("message") if isinstance(error, dict) else ""))
            if resp.status_code != 429 and resp.status_code < 500:
                raise TikTokApiError(str(code or f"http_{resp.status_code}"), desc, doc.get("log_id"),
                                     resp.status_code)
            last = f"HTTP {resp.status_code} {desc}".strip()
        time.sleep(min(client.backoff_base_seconds * 2 ** attempt, client.backoff_max_seconds))
    raise TikTokTransportError(f"oauth/revoke: gave up after {client.max_retries + 1} attempts: {last}")
