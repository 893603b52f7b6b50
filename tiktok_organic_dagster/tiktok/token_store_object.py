"""Token store on object storage: ``<prefix>/<token_store_key>.json``, one object per source and account.

One object per entry, so runs of different accounts never contend for the same object. Every write is
conditional (``obstore.put(..., mode=...)``): ``"create"`` (S3 ``If-None-Match: *``, GCS generation 0, Azure
``If-None-Match``) for a new entry, ``{"e_tag", "version"}`` (S3/Azure ``If-Match``, GCS generation) for an
update, so a writer that read an older version can never overwrite a newer one. There is no lock: what to do
after a conflict is decided by ``TokenManager`` (re-read; keep a newer token another writer stored).

Object body (``version`` 1)::

    {"version": 1, "key": "<token_store_key>", "entry": {<entry fields>}}   # or, with a key:
    {"version": 1, "key": "<token_store_key>", "entry": {"encrypted": "fernet", "ciphertext": "gAAAA..."}}

``obstore`` (the Python binding of the Rust ``object_store`` crate behind deltalake) rather than boto3: one
library gives S3, GCS and Azure the same conditional-put API, and it reads the same environment variables as
the Delta root.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tiktok_organic_dagster.tiktok.errors import TokenStoreError
from tiktok_organic_dagster.tiktok.object_store_env import credential_env_names, open_object_store
from tiktok_organic_dagster.tiktok.redaction import redact, register_secret
from tiktok_organic_dagster.tiktok.token_backends import (
    StoreConflict,
    Stored,
    TokenStoreBase,
    Version,
    check_key,
)
from tiktok_organic_dagster.tiktok.token_crypto import EntryCodec
from tiktok_organic_dagster.tiktok.tokens import TokenEntry

if TYPE_CHECKING:
    from obstore.store import ObjectStore

OBJECT_VERSION = 1
# A 404 for the bucket/container itself, as S3 (and S3-compatible stores), GCS and Azure word it.
_MISSING_CONTAINER = ("NoSuchBucket", "The specified bucket does not exist", "ContainerNotFound")


def _reason(exc: BaseException) -> str:
    """First line of an obstore error (the rest is a debug dump), redacted."""
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)[:300]


class ObjectTokenStore(TokenStoreBase):
    """Entries as objects under an ``s3://``/``gs://``/``az://``/``abfss://`` prefix, written compare-and-swap."""

    exclusive_lock = False

    def __init__(self, url: str, codec: EntryCodec | None = None, store: ObjectStore | None = None) -> None:
        self.url = url.rstrip("/") + "/"
        self.codec = codec or EntryCodec.from_env()
        self._store = store if store is not None else open_object_store(self.url)

    @property
    def location(self) -> str:
        return self.url

    def object_name(self, key: str) -> str:
        return f"{check_key(key)}.json"

    def describe(self, key: str) -> str:
        return f"token store entry '{key}' ({self.url}{self.object_name(key)})"

    def _failed(self, doing: str, key: str, exc: BaseException, reason: str | None = None,
                hint: str = "") -> TokenStoreError:
        names = ", ".join(credential_env_names(self.url)) or "none"
        return TokenStoreError(f"cannot {doing} {self.describe(key)}: {reason or _reason(exc)} (credentials and "
                               f"endpoint come from the environment; variables set: {names}).{hint}")

    def read_bytes(self, key: str) -> tuple[bytes, Version] | None:
        """The raw object and its version, or None if there is none."""
        import obstore
        from obstore.exceptions import BaseError, NotFoundError

        try:
            result = obstore.get(self._store, self.object_name(key))
            data = bytes(result.bytes())
        except (FileNotFoundError, NotFoundError) as exc:
            if any(marker in str(exc) for marker in _MISSING_CONTAINER):
                # Not "no entry yet": a first run would spend the environment's refresh token on TikTok and
                # then fail to store the rotation, leaving no valid token anywhere.
                raise self._failed("read", key, exc, "the bucket/container does not exist") from None
            return None
        except (BaseError, OSError) as exc:
            raise self._failed("read", key, exc) from None
        meta = result.meta
        return data, (meta.get("e_tag"), meta.get("version"))

    def probe(self, key: str) -> None:
        self.read_bytes(key)

    def read(self, key: str) -> Stored:
        found = self.read_bytes(key)
        if found is None:
            return Stored(None, None)
        data, version = found
        where = self.describe(key)
        try:
            doc = json.loads(data)
            entry = self.codec.decode(doc["entry"], where)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TokenStoreError(f"{where} is not a valid token store object; delete it and re-authorize "
                                  "with tiktok-organic-authorize") from None
        register_secret(entry.refresh_token)
        register_secret(entry.access_token)
        return Stored(entry, version)

    def write(self, key: str, entry: TokenEntry, expected: Version | None) -> None:
        if expected is None:
            mode: Any = "create"
        else:
            mode = {name: value for name, value in zip(("e_tag", "version"), expected, strict=True) if value}
            if not mode:
                raise TokenStoreError(f"{self.describe(key)}: the object store returned neither an ETag nor a "
                                      "version, so conditional writes are impossible; use S3, GCS or Azure")
        self._put(key, entry, mode)

    def put(self, key: str, entry: TokenEntry) -> None:
        self._put(key, entry, "overwrite")

    def delete(self, key: str) -> bool:
        import obstore
        from obstore.exceptions import BaseError

        if self.read_bytes(key) is None:
            return False
        try:
            obstore.delete(self._store, self.object_name(key))
        except (BaseError, OSError) as exc:
            raise self._failed("delete", key, exc) from None
        return True

    def _put(self, key: str, entry: TokenEntry, mode: Any) -> None:
        import obstore
        from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError

        body = {"version": OBJECT_VERSION, "key": key, "entry": self.codec.encode(entry)}
        data = json.dumps(body, sort_keys=True).encode("utf-8")
        try:
            obstore.put(self._store, self.object_name(key), data, mode=mode, use_multipart=False)
        except (AlreadyExistsError, PreconditionError):
            raise StoreConflict(f"{self.describe(key)} changed since it was read") from None
        except (BaseError, OSError) as exc:
            raise self._failed("write", key, exc, hint=" If this follows a token refresh, the rotated refresh "
                               "token was not kept: re-authorize with tiktok-organic-authorize if the next run "
                               "fails with invalid_grant.") from None
