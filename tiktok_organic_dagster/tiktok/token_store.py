"""Token store: where the rotated tokens live, and the local-file backend (one JSON file, several accounts).

TikTok rotates refresh tokens: once a refresh succeeds the old refresh token may stop working. The newest
one therefore has to survive crashes and concurrent runs, so it is written *before* the new access token is
used. ``TIKTOK_TOKEN_STORE`` (or the client's ``token_store_path``) picks the backend
(:func:`open_token_store`): a local path keeps today's file (written atomically, mode 0600, under an
exclusive ``flock`` on a sidecar lock file); an ``s3://``/``gs://``/``az://``/``abfss://`` prefix keeps one
object per entry with compare-and-swap writes (``token_store_object.py``). With ``TIKTOK_TOKEN_STORE_KEY``
set, entries are encrypted in both (``token_crypto.py``).

File layout (``version`` 1; times are Unix epoch seconds)::

    {"version": 1,
     "entries": {
       "<token_store_key>": {
         "refresh_token": "rft...", "refresh_expires_at": 1790000000.0,
         "access_token": "act...", "access_expires_at": 1760086400.0, "access_refresh_after": 1760086340.0,
         "scopes": ["user.info.basic", "video.list"], "open_id": "...",
         "descends_from": "<sha256 hex of the TIKTOK_REFRESH_TOKEN value this lineage supersedes, or null>",
         "updated_at": 1760000000.0},
       "<another key, encrypted>": {"encrypted": "fernet", "ciphertext": "gAAAA..."}}}

Default location: ``$TIKTOK_TOKEN_STORE``, else ``$DAGSTER_HOME/tiktok_token_store.json``, else
``./.tiktok_tokens.json`` (see :func:`default_store_path`). A container's disk is gone when its run ends, so
a deployment that starts a container per run needs an object-store prefix here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tiktok_organic_dagster.names import TOKEN_STORE_ENV
from tiktok_organic_dagster.tiktok.errors import TokenStoreError
from tiktok_organic_dagster.tiktok.object_store_env import is_object_url
from tiktok_organic_dagster.tiktok.redaction import register_secret
from tiktok_organic_dagster.tiktok.token_backends import (
    StoreConflict,
    Stored,
    TokenStoreBase,
    Version,
    check_key,
)
from tiktok_organic_dagster.tiktok.token_crypto import EntryCodec
from tiktok_organic_dagster.tiktok.tokens import TokenEntry

STORE_VERSION = 1
FILE_MODE = 0o600


def configured_location(configured: str | None = None) -> str | None:
    """The explicit value, else ``TIKTOK_TOKEN_STORE``, else None (the local default applies)."""
    return configured or os.environ.get(TOKEN_STORE_ENV) or None


def default_store_path(configured: str | None = None) -> Path:
    """Resolve a local store path: explicit value, ``TIKTOK_TOKEN_STORE``, ``$DAGSTER_HOME``, then cwd."""
    value = configured_location(configured)
    if value:
        return Path(value.removeprefix("file://")).expanduser().absolute()
    home = os.environ.get("DAGSTER_HOME")
    if home:
        return Path(home).expanduser().absolute() / "tiktok_token_store.json"
    return Path.cwd() / ".tiktok_tokens.json"


def store_location(configured: str | None = None) -> str:
    """The store's URL (normalized to end in '/') or absolute local path, as :func:`open_token_store` uses it."""
    value = configured_location(configured)
    if value and is_object_url(value):
        return value.rstrip("/") + "/"
    return str(default_store_path(configured))


def open_token_store(configured: str | None = None, codec: EntryCodec | None = None) -> TokenStoreBase:
    """The backend for a local path or an object-store URL prefix; the key is read from the environment."""
    location = store_location(configured)
    codec = codec or EntryCodec.from_env()
    if is_object_url(location):
        from tiktok_organic_dagster.tiktok.token_store_object import ObjectTokenStore

        return ObjectTokenStore(location, codec)
    return TokenStore(location, codec)


def _digest(raw: Any) -> Version:
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode("utf-8")).hexdigest(), None


class TokenStore(TokenStoreBase):
    """Local JSON file of entries keyed by ``token_store_key``; writes are atomic, file mode is kept at 0600."""

    exclusive_lock = True

    def __init__(self, path: str | os.PathLike[str], codec: EntryCodec | None = None) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.codec = codec or EntryCodec.from_env()

    @property
    def location(self) -> str:
        return str(self.path)

    def describe(self, key: str) -> str:
        return f"token store entry '{key}' ({self.path})"

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

    def check_writable(self) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TokenStoreError(f"token store {self.path}: cannot create its folder ({exc.strerror})") from None
        target = self.path if self.path.exists() else folder
        if not os.access(target, os.W_OK):
            raise TokenStoreError(f"token store {self.path}: {target} is not writable, so a rotated refresh token "
                                  "could not be saved")

    def _raw_entries(self) -> dict[str, Any]:
        """The stored (possibly encrypted) form of every entry; a missing file is empty."""
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
            entries = json.loads(raw)["entries"]
            if not isinstance(entries, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise self._corrupt() from None
        return entries

    def _corrupt(self) -> TokenStoreError:
        return TokenStoreError(
            f"token store {self.path} is not a valid token store file; fix or delete it and re-authorize")

    def _decode(self, key: str, raw: Any) -> TokenEntry:
        try:
            entry = self.codec.decode(raw, self.describe(key))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise self._corrupt() from None
        register_secret(entry.refresh_token)
        register_secret(entry.access_token)
        return entry

    def read_all(self) -> dict[str, TokenEntry]:
        """All entries; a corrupt file raises TokenStoreError (never guessed over)."""
        return {str(k): self._decode(str(k), v) for k, v in self._raw_entries().items()}

    def read(self, key: str) -> Stored:
        raw = self._raw_entries().get(check_key(key))
        if raw is None:
            return Stored(None, None)
        return Stored(self._decode(key, raw), _digest(raw))

    def write(self, key: str, entry: TokenEntry, expected: Version | None) -> None:
        """Compare-and-swap on the entry's digest. Call inside :meth:`locked` (which makes a conflict rare)."""
        entries = self._raw_entries()
        current = entries.get(check_key(key))
        if (None if current is None else _digest(current)) != expected:
            raise StoreConflict(f"{self.describe(key)} changed since it was read")
        self._store(entries, key, entry)

    def put(self, key: str, entry: TokenEntry) -> None:
        """Insert/replace one entry, keeping the others. Call inside :meth:`locked` to avoid lost updates."""
        self._store(self._raw_entries(), check_key(key), entry)

    def delete(self, key: str) -> bool:
        """Remove one entry, keeping the others. Call inside :meth:`locked` to avoid lost updates."""
        entries = self._raw_entries()
        if check_key(key) not in entries:
            return False
        self._write({"version": STORE_VERSION, "entries": {k: v for k, v in entries.items() if k != key}})
        return True

    def _store(self, entries: dict[str, Any], key: str, entry: TokenEntry) -> None:
        # Other entries keep their stored form: one written under another key, or in clear, stays readable
        # by whoever wrote it; each entry is encrypted when it is next written.
        entries = {**entries, key: self.codec.encode(entry)}
        self._write({"version": STORE_VERSION, "entries": entries})

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
