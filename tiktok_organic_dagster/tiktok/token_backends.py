"""The token store interface: read an entry with its version, write it back only if that version is current.

Two implementations, chosen from the configured location by :func:`token_store.open_token_store`:

- ``TokenStore`` (``token_store.py``): today's local JSON file; ``locked()`` is an exclusive ``flock``, so
  read-refresh-write is serialized between processes of one machine; the version check is a second guard.
- ``ObjectTokenStore`` (``token_store_object.py``): one object per entry under an ``s3://``/``gs://``/
  ``az://`` prefix; there is no lock (``locked()`` does nothing), the version check *is* the guard:
  create-if-absent for a new entry, ``If-Match`` on the ETag (GCS: generation) read for an update.

What a caller does when :class:`StoreConflict` is raised (re-read; keep a newer token another writer stored)
lives in ``TokenManager`` (``tokens.py``), so both backends follow the same rule.
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tiktok_organic_dagster.tiktok.errors import TokenStoreError

if TYPE_CHECKING:  # tokens.py imports this module at run time
    from tiktok_organic_dagster.tiktok.token_crypto import EntryCodec
    from tiktok_organic_dagster.tiktok.tokens import TokenEntry

# An opaque version of one stored entry: (e_tag, version) of an object, (sha256 of the entry, None) in the
# file. None means "no entry": a write with expected=None creates the entry and fails if one appeared.
Version = tuple[str | None, str | None]
_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class StoreConflict(Exception):
    """The entry is no longer at the version the write expected: another writer got there first."""


@dataclass(frozen=True, repr=False)
class Stored:
    """One entry as read, with the version a conditional write must name (both None when absent)."""

    entry: TokenEntry | None
    version: Version | None


def check_key(key: str) -> str:
    """Entry keys name objects and JSON members: plain names only (no '/', no '..')."""
    if not isinstance(key, str) or not _KEY_RE.match(key) or ".." in key:
        raise TokenStoreError(f"token store key {key!r} is not a plain name: use letters, digits, '_', '-', '.'")
    return key


class TokenStoreBase(ABC):
    """Where one deployment keeps the tokens of its accounts, one entry per ``token_store_key``."""

    #: True when :meth:`locked` keeps every other writer out (flock); False when only the version check does.
    exclusive_lock: bool = False
    codec: EntryCodec

    @property
    @abstractmethod
    def location(self) -> str:
        """The path or URL, for messages."""

    @abstractmethod
    def describe(self, key: str) -> str:
        """Where entry ``key`` lives, for messages (``token store entry 'k' (s3://b/p/k.json)``)."""

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive section around read-refresh-write where the backend has a lock; a no-op otherwise."""
        yield

    @abstractmethod
    def read(self, key: str) -> Stored:
        """The entry and its version; a missing entry is ``Stored(None, None)``; unreadable -> TokenStoreError."""

    @abstractmethod
    def write(self, key: str, entry: TokenEntry, expected: Version | None) -> None:
        """Store ``entry`` only if the stored version is still ``expected`` (None: only if absent); raise
        :class:`StoreConflict` otherwise. Never overwrites a version the caller has not seen."""

    @abstractmethod
    def put(self, key: str, entry: TokenEntry) -> None:
        """Store unconditionally (a new authorization replaces whatever is there)."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove entry ``key`` (an offboarded account); False if there was none."""

    def check_writable(self) -> None:
        """Fail with TokenStoreError if a rotated token could not be written (checked before it is spent)."""
        return None  # object stores: write permission shows only on the first write

    def probe(self, key: str) -> None:
        """Fail with TokenStoreError if the store cannot be reached; the entry is not decoded."""
        return None  # a local file is created by its first write

    def get(self, key: str) -> TokenEntry | None:
        return self.read(key).entry
