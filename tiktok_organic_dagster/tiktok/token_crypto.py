"""Encryption at rest of token store entries (local file and object store alike): Fernet from ``cryptography``.

With ``TIKTOK_TOKEN_STORE_KEY`` set (a Fernet key; several comma-separated keys decrypt, the first encrypts,
so a key can be rotated) every entry is written as ``{"encrypted": "fernet", "ciphertext": "..."}``; the
ciphertext is the entry's JSON, authenticated (AES-128-CBC + HMAC-SHA256), so a wrong key is detected rather
than producing garbage.

Rules:
- encrypted entry, no key set -> TokenStoreError naming the variable; nothing is written;
- encrypted entry, wrong key -> TokenStoreError naming the variable; nothing is written, nothing refreshed
  (the refresh token is never spent when it cannot be stored again);
- entry in clear, key set -> read as it is (one log line) and encrypted at its next write: the switch to
  encryption needs no migration step, and an entry is never rewritten just to change its format.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from tiktok_organic_dagster.names import TOKEN_STORE_KEY_ENV
from tiktok_organic_dagster.tiktok.errors import TokenStoreError
from tiktok_organic_dagster.tiktok.redaction import client_logger, register_secret
from tiktok_organic_dagster.tiktok.tokens import TokenEntry

ENCRYPTION = "fernet"
GENERATE_HINT = ("generate one with: python -c \"from cryptography.fernet import Fernet; "
                 "print(Fernet.generate_key().decode())\"")

logger = client_logger()


class EntryCodec:
    """Turns an entry into its stored JSON form and back, encrypting when a key is configured."""

    def __init__(self, keys: str | None) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        parts = [k.strip() for k in (keys or "").split(",") if k.strip()]
        for part in parts:
            register_secret(part)
        try:
            self._fernet: MultiFernet | None = MultiFernet([Fernet(k) for k in parts]) if parts else None
        except ValueError:  # never echo the value
            raise TokenStoreError(f"{TOKEN_STORE_KEY_ENV} is not a Fernet key (32 url-safe base64-encoded "
                                  f"bytes; several keys are separated by commas); {GENERATE_HINT}") from None
        self._warned: set[str] = set()
        self._warned_lock = threading.Lock()

    @classmethod
    def from_env(cls) -> EntryCodec:
        import os

        return cls(os.environ.get(TOKEN_STORE_KEY_ENV))

    @property
    def encrypting(self) -> bool:
        return self._fernet is not None

    def encode(self, entry: TokenEntry) -> dict[str, Any]:
        doc = entry.to_json()
        if self._fernet is None:
            return doc
        plain = json.dumps(doc, sort_keys=True).encode("utf-8")
        return {"encrypted": ENCRYPTION, "ciphertext": self._fernet.encrypt(plain).decode("ascii")}

    def decode(self, raw: Any, where: str) -> TokenEntry:
        """The entry stored as ``raw`` at ``where`` (named in errors). Raises ValueError if it is malformed."""
        if isinstance(raw, Mapping) and "encrypted" in raw:
            return self._decrypt(raw, where)
        entry = TokenEntry.from_json(raw)
        if self._fernet is not None:
            with self._warned_lock:
                first = where not in self._warned
                self._warned.add(where)
            if first:
                logger.info("%s is stored in clear although %s is set; it is encrypted at its next write",
                            where, TOKEN_STORE_KEY_ENV)
        return entry

    def _decrypt(self, raw: Mapping[str, Any], where: str) -> TokenEntry:
        from cryptography.fernet import InvalidToken

        if raw.get("encrypted") != ENCRYPTION or not isinstance(raw.get("ciphertext"), str):
            raise ValueError("unknown encryption")
        if self._fernet is None:
            raise TokenStoreError(
                f"{where} is encrypted and {TOKEN_STORE_KEY_ENV} is not set: set it to the Fernet key the "
                "store was written with (the same value for the code server and every run worker)")
        try:
            plain = self._fernet.decrypt(raw["ciphertext"].encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise TokenStoreError(
                f"{where} cannot be decrypted with the key in {TOKEN_STORE_KEY_ENV} (wrong key): set "
                f"{TOKEN_STORE_KEY_ENV} to the key the store was written with (during a key change list both, "
                "new key first, comma-separated), or re-authorize with tiktok-organic-authorize to replace "
                "the entry") from None
        return TokenEntry.from_json(json.loads(plain))
