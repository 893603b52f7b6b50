"""Token store (one JSON file, several accounts) and the token lifecycle that reads and writes it.

TikTok rotates refresh tokens: once a refresh succeeds the old refresh token may stop working. The newest
one therefore has to survive crashes and concurrent runs, so it is written (atomically, mode 0600, under an
exclusive ``flock`` on a sidecar lock file) *before* the new access token is used.

File layout (``version`` 1; times are Unix epoch seconds)::

    {"version": 1,
     "entries": {
       "<token_store_key>": {
         "refresh_token": "rft...", "refresh_expires_at": 1790000000.0,
         "access_token": "act...", "access_expires_at": 1760086400.0, "access_refresh_after": 1760086340.0,
         "scopes": ["user.info.basic", "video.list"], "open_id": "...",
         "descends_from": "<sha256 hex of the TIKTOK_REFRESH_TOKEN value this lineage supersedes, or null>",
         "updated_at": 1760000000.0}}}

Default path: ``$TIKTOK_TOKEN_STORE``, else ``$DAGSTER_HOME/tiktok_token_store.json``, else
``./.tiktok_tokens.json`` (see :func:`default_store_path`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tiktok_organic_dagster.names import TOKEN_STORE_ENV
from tiktok_organic_dagster.tiktok.errors import TokenStoreError
from tiktok_organic_dagster.tiktok.redaction import register_secret
from tiktok_organic_dagster.tiktok.tokens import TokenEntry

STORE_VERSION = 1
FILE_MODE = 0o600


def default_store_path(configured: str | None = None) -> Path:
    """Resolve the store path: explicit value, ``TIKTOK_TOKEN_STORE``, ``$DAGSTER_HOME``, then cwd."""
    if configured:
        return Path(configured).expanduser().absolute()
    env = os.environ.get(TOKEN_STORE_ENV)
    if env:
        return Path(env).expanduser().absolute()
    home = os.environ.get("DAGSTER_HOME")
    if home:
        return Path(home).expanduser().absolute() / "tiktok_token_store.json"
    return Path.cwd() / ".tiktok_tokens.json"



class TokenStore:
    """JSON file of entries keyed by ``token_store_key``; writes are atomic, file mode is kept at 0600."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive cross-process lock (flock on a sidecar file) around read-refresh-write."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def read_all(self) -> dict[str, TokenEntry]:
        """All entries; a missing file is empty, a corrupt one raises TokenStoreError (never guessed over)."""
        try:
            with open(self.path, "rb") as fh:
                if (os.fstat(fh.fileno()).st_mode & 0o777) != FILE_MODE:
                    os.fchmod(fh.fileno(), FILE_MODE)
                raw = fh.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise TokenStoreError(f"cannot read token store {self.path}: {exc.strerror}") from None
        try:
            doc = json.loads(raw)
            entries = doc["entries"]
            out = {str(k): TokenEntry.from_json(v) for k, v in entries.items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TokenStoreError(
                f"token store {self.path} is not a valid token store file; fix or delete it and re-authorize"
            ) from None
        for entry in out.values():
            register_secret(entry.refresh_token)
            register_secret(entry.access_token)
        return out

    def get(self, key: str) -> TokenEntry | None:
        return self.read_all().get(key)

    def put(self, key: str, entry: TokenEntry) -> None:
        """Insert/replace one entry, keeping the others. Call inside :meth:`locked` to avoid lost updates."""
        entries = self.read_all()
        entries[key] = entry
        self._write({"version": STORE_VERSION, "entries": {k: e.to_json() for k, e in entries.items()}})

    def _write(self, doc: dict[str, Any]) -> None:
        """Temp file in the same directory (created 0600) + fsync + os.replace + directory fsync."""
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # umask cannot widen it, but be explicit
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
