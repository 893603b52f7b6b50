"""``python -m tiktok_organic_dagster.sandbox`` / ``tiktok-organic-sandbox``: run the sandbox standalone.

Prints ONE JSON line ``{"base_url", "client_id", "videos"}`` (never the secret or a token) and serves
until SIGTERM/SIGINT. ``--env-file`` is the dev convenience for running the pipeline against it: it writes
TIKTOK_API_BASE_URL, TIKTOK_CLIENT_ID, TIKTOK_CLIENT_SECRET and TIKTOK_REFRESH_TOKEN (mode 0600). The
refresh token there is the initial one: after the first refresh the client's token store holds the live one.

``--accounts N`` (or ``--account-names a,b``) serves several accounts of the one app: the JSON line then
also has ``"accounts": [names]`` and the env file one ``<NAME>_REFRESH_TOKEN`` line per account
(``ACCOUNT_2_REFRESH_TOKEN=...``); TIKTOK_REFRESH_TOKEN stays the first account's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .accounts import account_names as config_account_names
from .config import SandboxConfig
from .server import SandboxServer


def account_env_name(account: str) -> str:
    """The env-file variable holding an account's initial refresh token: ``ACCOUNT_2_REFRESH_TOKEN``."""
    return f"{account.upper()}_REFRESH_TOKEN"


def write_env_file(path: str, server: SandboxServer) -> None:
    """Write the credentials with mode 0600 (also tightening an existing file)."""
    lines = [
        f"TIKTOK_API_BASE_URL={server.base_url}",
        f"TIKTOK_CLIENT_ID={server.client_id}",
        f"TIKTOK_CLIENT_SECRET={server.client_secret}",
        f"TIKTOK_REFRESH_TOKEN={server.initial_refresh_token}",
    ]
    if len(server.initial_refresh_tokens) > 1:
        lines += [f"{account_env_name(name)}={token}" for name, token in server.initial_refresh_tokens.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, ("\n".join(lines) + "\n").encode())
    finally:
        os.close(fd)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tiktok-organic-sandbox", description="Local TikTok Open API v2 sandbox."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--videos", type=int, default=300)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rate-limit", type=int, default=600, help="per endpoint and window; <= 0 disables")
    p.add_argument("--rate-window-seconds", type=float, default=60.0)
    p.add_argument("--access-ttl-seconds", type=int, default=86400)
    p.add_argument("--accounts", type=int, default=1, help="accounts (users) of the app: account_1 ... account_N")
    p.add_argument("--account-names", default="",
                   help="comma-separated account names instead (lowercase letters, digits, '_')")
    p.add_argument("--env-file", default=None, help="write credentials here (mode 0600)")
    args = p.parse_args(argv)
    if args.accounts < 1:
        p.error("--accounts must be >= 1")
    args.account_names = tuple(n.strip() for n in args.account_names.split(",") if n.strip())
    try:
        config_account_names(SandboxConfig(accounts=args.accounts, account_names=args.account_names))
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    config = SandboxConfig(
        video_count=args.videos,
        seed=args.seed,
        latency_ms=args.latency_ms,
        rate_limit=args.rate_limit,
        rate_window_seconds=args.rate_window_seconds,
        access_ttl_seconds=args.access_ttl_seconds,
        accounts=len(args.account_names) or args.accounts,
        account_names=args.account_names,
    )
    server = SandboxServer(config, host=args.host, port=args.port).start()
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        if args.env_file:
            write_env_file(args.env_file, server)
        banner: dict[str, object] = {"base_url": server.base_url, "client_id": server.client_id,
                                     "videos": args.videos}
        if len(server.account_names) > 1:
            banner["accounts"] = server.account_names
        sys.stdout.write(json.dumps(banner) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0
