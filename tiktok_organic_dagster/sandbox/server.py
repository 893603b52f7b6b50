"""HTTP front of the sandbox: a keep-alive ThreadingHTTPServer plus the public ``SandboxServer`` API.

Per-request overhead is kept small for benchmarks: HTTP/1.1 keep-alive, TCP_NODELAY, headers and body
written in one send, no per-request logging. ``stop()`` also cuts open keep-alive connections, so a
stopped sandbox really refuses traffic; ``start()`` again rebinds the same port with the same state.
"""

from __future__ import annotations

import json
import random
import secrets
import socket
import threading
from collections.abc import Sequence
from dataclasses import asdict, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

from .accounts import account_names as config_account_names
from .api import Response, SandboxApi, new_log_id
from .config import USER_FIELD_SCOPES, VIDEO_FIELDS, Faults, SandboxConfig

_REASONS = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.request, add=True)

    def finish(self) -> None:
        self.server.track(self.request, add=False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: per-request stderr logging would dominate benchmark timings."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        owner = self.server.owner
        try:
            if self.path.startswith("/_sandbox/"):
                resp = owner._admin(method, self.path, body)
            else:
                resp = owner.api.handle(method, self.path, dict(self.headers.items()), body)
        except Exception as exc:  # never kill the connection thread on a sandbox bug; answer 500
            payload = {
                "data": {},
                "error": {"code": "internal_error", "message": type(exc).__name__, "log_id": new_log_id()},
            }
            resp = Response(500, json.dumps(payload).encode())
        self._send(resp)

    def _send(self, resp: Response) -> None:
        head = [
            f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Error')}",
            f"Content-Type: {resp.content_type}",
            f"Content-Length: {len(resp.body)}",
        ]
        head += [f"{k}: {v}" for k, v in resp.headers]
        if self.close_connection:
            head.append("Connection: close")
        try:
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + resp.body)
        except OSError:  # client gave up (e.g. read timeout during a stall)
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], owner: SandboxServer) -> None:
        self.owner = owner
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def drop_connections(self) -> None:
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class SandboxServer:
    """Local TikTok Open API v2 simulator (OAuth authorize page, token/revoke, user/info, video/list,
    video/query) for one app with one or more accounts (``SandboxConfig.accounts`` / ``account_names``).

    Token, data, consent and admin endpoints all live under ``base_url``. See ``Faults`` for fault semantics.
    Methods taking ``account`` act on that account (None: the first one); an unknown name is a KeyError.
    """

    def __init__(self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        config = config or SandboxConfig()
        self.host, self._port = host, port
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        self.client_id = "sbx" + "".join(random.Random(config.seed).choices(alphabet, k=13))  # per seed
        self.client_secret = secrets.token_urlsafe(24)
        self.initial_refresh_tokens: dict[str, str] = {
            name: "rft.sandbox" + secrets.token_hex(20) for name in config_account_names(config)
        }
        self.initial_refresh_token = next(iter(self.initial_refresh_tokens.values()))  # the first account's
        self.api = SandboxApi(config, self.client_id, self.client_secret, self.initial_refresh_tokens)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------
    @property
    def config(self) -> SandboxConfig:
        return self.api.config

    @config.setter
    def config(self, value: SandboxConfig) -> None:
        self.api.config = value

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("SandboxServer has not been started yet")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> SandboxServer:
        """Bind (same port as before after a stop) and serve in a daemon thread; idempotent."""
        if self._httpd is None:
            self._httpd = _HTTPServer((self.host, self._port), self)
            self._port = self._httpd.server_address[1]
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"tiktok-sandbox-{self._port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut keep-alive connections: clients then see connection refused/reset."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- accounts and tokens ---------------------------------------------------------------------
    @property
    def account_names(self) -> list[str]:
        """The app's accounts in order; the first one is what ``account=None`` means."""
        return self.api.account_names

    def issue_authorization_code(
        self, redirect_uri: str | None = None, code_challenge: str | None = None, *,
        account: str | None = None, scopes: Sequence[str] | None = None,
    ) -> str:
        """A single-use code (10 min) for ``account``. If redirect_uri/code_challenge (hex SHA-256) are given,
        the exchange must match them, as TikTok requires. ``scopes`` (None: the app's live granted_scopes)
        narrows what the resulting tokens may read, like a user approving only those."""
        with self.api.lock:
            name = self.api.resolve(account)
            return self.api.tokens.issue_code(
                name, redirect_uri, code_challenge, scopes=None if scopes is None else tuple(scopes)
            )

    def current_refresh_token(self, account: str | None = None) -> str | None:
        """The account's latest refresh token while it is valid, else None (revoked/expired)."""
        with self.api.lock:
            return self.api.tokens.current_refresh_token(self.api.resolve(account))

    def issued_tokens(self) -> list[str]:
        """Every access and refresh token this sandbox has issued, superseded ones included (tests scan
        everything the project wrote for them)."""
        with self.api.lock:
            return list(self.api.tokens.issued)

    def revoke_all_tokens(self, account: str | None = None) -> None:
        """The account's refresh tokens, access tokens and codes stop working (the user disconnected)."""
        with self.api.lock:
            self.api.tokens.revoke_all(self.api.resolve(account))

    def expire_access_tokens(self, account: str | None = None) -> None:
        """The account's access tokens now get 401 access_token_invalid; refreshing still works."""
        with self.api.lock:
            self.api.tokens.expire_access(self.api.resolve(account))

    def expire_refresh_tokens(self, account: str | None = None) -> None:
        """The account's refresh tokens now get invalid_grant (simulates the 365/180-day deadline passing)."""
        with self.api.lock:
            self.api.tokens.expire_refresh(self.api.resolve(account))

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults and restart the global every-Nth counter (and short-page state)."""
        with self.api.lock:
            self.api.config.faults = faults
            self.api.reset_faults()

    # ---- ground truth and mutations -------------------------------------------------------------
    def videos(self, account: str | None = None) -> list[dict[str, Any]]:
        """Exactly what the API returns to the account's token with every field requested, newest first."""
        with self.api.lock:
            acc = self.api.account_named(account)
            return acc.render(acc.all_videos(), VIDEO_FIELDS, self.config.extra_fields)

    def user(self, account: str | None = None) -> dict[str, Any]:
        with self.api.lock:
            return self.api.account_named(account).user(USER_FIELD_SCOPES)

    def add_videos(
        self, n: int, create_time: int | None = None, account: str | None = None
    ) -> list[dict[str, Any]]:
        """n new public videos at unique seconds >= max(now, newest+1) (or from create_time, skipping taken
        seconds); returns them with all fields, newest first."""
        with self.api.lock:
            acc = self.api.account_named(account)
            added = acc.add(n, create_time)
            return acc.render(
                sorted(added, key=lambda v: -v.create_time), VIDEO_FIELDS, self.config.extra_fields
            )

    def delete_video(self, video_id: str, account: str | None = None) -> None:
        """Remove a public video (KeyError if the account has no such id); list/query stop returning it."""
        with self.api.lock:
            self.api.account_named(account).delete(video_id)

    def bump_counters(
        self, video_ids: list[str] | None = None, fraction: float = 0.1, account: str | None = None
    ) -> list[str]:
        """Grow views/likes/comments/shares of the given ids (KeyError if unknown) or of a seeded random
        fraction (at least one video when fraction > 0); returns the changed ids."""
        with self.api.lock:
            return self.api.account_named(account).bump(video_ids, fraction)

    # ---- accounting --------------------------------------------------------------------------------
    def request_counts(self) -> dict[str, int]:
        """Keys oauth_token, user_info, video_list, video_query (always), oauth_revoke (once used)."""
        with self.api.lock:
            return dict(self.api.request_counts)

    def status_counts(self) -> dict[int, int]:
        """HTTP status -> answers, over every counted request (e.g. ``[429]`` = all rate-limited answers)."""
        with self.api.lock:
            return dict(self.api.status_counts)

    def request_counts_by_account(self) -> dict[str, dict[str, int]]:
        """account -> endpoint -> requests whose credential (access/refresh token, code) was recognised as
        that account's; injected faults and unknown credentials count only in ``request_counts``."""
        with self.api.lock:
            return {name: dict(c) for name, c in self.api.request_counts_by_account.items()}

    def status_counts_by_account(self) -> dict[str, dict[int, int]]:
        """account -> HTTP status -> answers, for the requests ``request_counts_by_account`` attributes."""
        with self.api.lock:
            return {name: dict(c) for name, c in self.api.status_counts_by_account.items()}

    def query_batch_sizes(self) -> list[int]:
        """Number of ids in each authorized video/query request since the last ``reset_counts()``."""
        with self.api.lock:
            return list(self.api.query_batch_sizes)

    def reset_counts(self) -> None:
        self.api.reset_counts()

    def state(self) -> dict[str, Any]:
        """Non-secret snapshot (GET /_sandbox/state); the top-level counts are the first account's."""
        with self.api.lock:
            acc = self.api.account
            return {
                "base_url": self.base_url if self._port else None,
                "client_id": self.client_id,
                "video_count": len(acc),
                "likes_count": acc.user(["likes_count"])["likes_count"],
                "newest_create_time": acc.newest_create_time,
                "oldest_create_time": acc.oldest_create_time,
                "request_counts": dict(self.api.request_counts),
                "status_counts": {str(k): v for k, v in self.api.status_counts.items()},
                "faults": asdict(self.config.faults),
                "granted_scopes": list(self.config.granted_scopes),
                "account_names": self.api.account_names,
                "accounts": [self._account_state(name) for name in self.api.accounts],
                "request_counts_by_account": {
                    name: dict(c) for name, c in self.api.request_counts_by_account.items()
                },
            }

    def _account_state(self, name: str) -> dict[str, Any]:
        acc = self.api.accounts[name]
        user = acc.user(["open_id", "display_name", "username", "likes_count"])
        return {
            "name": name,
            **user,
            "video_count": len(acc),
            "newest_create_time": acc.newest_create_time,
            "oldest_create_time": acc.oldest_create_time,
            "authorized": self.api.tokens.current_refresh_token(name) is not None,
        }

    # ---- admin HTTP --------------------------------------------------------------------------------
    def _admin(self, method: str, target: str, body: bytes) -> Response:
        """``/_sandbox/...``; mutations take an optional ``account`` in the JSON body or the query string
        (default: the first account); an unknown account or video id answers 404."""
        path, _, query = target.partition("?")
        path = path.rstrip("/")
        try:
            payload = json.loads(body) if body.strip() else {}
            if not isinstance(payload, dict):
                raise ValueError("body must be a JSON object")
            account = payload.get("account", parse_qs(query).get("account", [None])[0])
            if account is not None and not isinstance(account, str):
                raise ValueError("account must be a string")
            if account is not None:
                self.api.resolve(account)  # 404 before anything changes
            if method == "GET" and path == "/_sandbox/state":
                result: dict[str, Any] = self.state()
            elif method == "POST" and path == "/_sandbox/add_videos":
                added = self.add_videos(int(payload.get("count", 1)), payload.get("create_time"), account)
                result = {"added": [v["id"] for v in added], "video_count": self._count(account)}
            elif method == "POST" and path == "/_sandbox/bump_counters":
                result = {
                    "changed": self.bump_counters(
                        payload.get("video_ids"), float(payload.get("fraction", 0.1)), account
                    )
                }
            elif method == "POST" and path == "/_sandbox/delete_video":
                self.delete_video(str(payload["id"]), account)
                result = {"deleted": str(payload["id"]), "video_count": self._count(account)}
            elif method == "POST" and path in _TOKEN_ADMIN:
                getattr(self, _TOKEN_ADMIN[path])(account)
                result = {"ok": True, "account": self.api.resolve(account)}
            elif method == "POST" and path == "/_sandbox/faults":
                known = {f.name for f in fields(Faults)}
                self.set_faults(Faults(**{k: v for k, v in payload.items() if k in known}))
                result = {"faults": asdict(self.config.faults)}
            elif method == "POST" and path == "/_sandbox/reset_counts":
                self.reset_counts()
                result = {"ok": True}
            else:
                return Response(
                    404, json.dumps({"error": f"unknown admin endpoint {method} {path}"}).encode()
                )
        except KeyError as exc:
            return Response(404, json.dumps({"error": f"unknown or missing key: {exc}"}).encode())
        except (ValueError, TypeError) as exc:
            return Response(400, json.dumps({"error": str(exc)}).encode())
        return Response(200, json.dumps(result).encode())

    def _count(self, account: str | None) -> int:
        with self.api.lock:
            return len(self.api.account_named(account))


# POST /_sandbox/<path> {"account"?} -> the SandboxServer method it calls (no secret is ever answered).
_TOKEN_ADMIN = {
    "/_sandbox/revoke_tokens": "revoke_all_tokens",
    "/_sandbox/expire_access_tokens": "expire_access_tokens",
    "/_sandbox/expire_refresh_tokens": "expire_refresh_tokens",
}
