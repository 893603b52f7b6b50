"""One account's tokens and their lifecycle: which refresh token to use, when to refresh, and persisting
each rotation before the new access token is used (TikTok's old refresh token may die at each refresh).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tiktok_organic_dagster.tiktok.errors import ReauthorizationRequired, TikTokApiError, TokenStoreError, who
from tiktok_organic_dagster.tiktok.redaction import client_logger, register_secret
from tiktok_organic_dagster.tiktok.token_backends import StoreConflict

if TYPE_CHECKING:
    from tiktok_organic_dagster.tiktok.token_backends import Stored, TokenStoreBase

_ACCESS_MARGIN_SECONDS = 60.0
_ACCESS_MARGIN_FRACTION = 0.10
_MAX_STORE_ROUNDS = 5  # conflicting writes / adopted entries before giving up
# After invalid_grant on an object store: the writer that spent the token stores its rotation a moment
# after TikTok answered it, so look a few times before calling the token dead (1.75 s at most).
_REREAD_DELAYS = (0.0, 0.25, 0.5, 1.0)

logger = client_logger()


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: the store remembers *which* env token it descends from, not its value."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(repr=False)
class TokenEntry:
    """One account's tokens. ``repr`` never shows token values."""

    refresh_token: str
    refresh_expires_at: float | None = None
    access_token: str | None = None
    access_expires_at: float | None = None
    access_refresh_after: float | None = None
    scopes: list[str] = field(default_factory=list)
    open_id: str | None = None
    descends_from: str | None = None
    updated_at: float = 0.0

    def __repr__(self) -> str:
        return (f"TokenEntry(open_id={self.open_id!r}, scopes={self.scopes!r}, access_expires_at="
                f"{self.access_expires_at!r}, refresh_expires_at={self.refresh_expires_at!r})")

    def access_fresh(self, now: float) -> bool:
        """True if the access token can be used without refreshing first (missing expiry = until rejected)."""
        if not self.access_token:
            return False
        return self.access_refresh_after is None or now < self.access_refresh_after

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TokenEntry:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("refresh_token"), str):
            raise ValueError("entry without refresh_token")
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in raw.items() if k in known}
        values["scopes"] = list(values.get("scopes") or [])
        return cls(**values)


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def entry_from_token_response(
    body: Mapping[str, Any], *, now: float, descends_from: str | None, previous: TokenEntry | None = None
) -> TokenEntry:
    """Build an entry from a successful ``/v2/oauth/token/`` body; lifetimes come from the response only."""
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise TikTokApiError("invalid_token_response", "token response without access_token")
    refresh = body.get("refresh_token") or (previous.refresh_token if previous else None)
    if not isinstance(refresh, str) or not refresh:
        raise TikTokApiError("invalid_token_response", "token response without refresh_token")
    register_secret(access)
    register_secret(refresh)
    expires_in = _float_or_none(body.get("expires_in"))
    refresh_in = _float_or_none(body.get("refresh_expires_in"))
    access_expires_at = refresh_after = None
    if expires_in is not None:
        access_expires_at = now + expires_in
        refresh_after = access_expires_at - min(_ACCESS_MARGIN_SECONDS, _ACCESS_MARGIN_FRACTION * expires_in)
    if refresh_in is not None:
        refresh_expires_at: float | None = now + refresh_in
    elif previous is not None and refresh == previous.refresh_token:
        refresh_expires_at = previous.refresh_expires_at
    else:
        refresh_expires_at = None
    scope = body.get("scope")
    if isinstance(scope, str):
        scopes = [s.strip() for s in scope.replace(" ", ",").split(",") if s.strip()]
    elif previous is not None:
        scopes = list(previous.scopes)
    else:
        scopes = []
    open_id = body.get("open_id") or (previous.open_id if previous else None)
    return TokenEntry(refresh_token=refresh, refresh_expires_at=refresh_expires_at, access_token=access,
                      access_expires_at=access_expires_at, access_refresh_after=refresh_after, scopes=scopes,
                      open_id=open_id, descends_from=descends_from, updated_at=now)


class TokenManager:
    """Hands out a valid access token, refreshing (and persisting the rotation) when needed.

    Which refresh token to use: the store entry wins unless the configured (environment) refresh token is
    *new* — its hash differs from the entry's ``descends_from`` and from the stored refresh token — in which
    case the environment wins and starts a new lineage. An empty environment token means "use the store".
    """

    def __init__(
        self,
        store: TokenStoreBase,
        key: str,
        env_refresh_token: str,
        post_token: Callable[[dict[str, str]], Mapping[str, Any]],
        *,
        env_var: str = "TIKTOK_REFRESH_TOKEN",
        clock: Callable[[], float] = time.time,
        on_refresh: Callable[[], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.key = key
        self._env_token = env_refresh_token or ""
        self._env_hash = hash_token(self._env_token) if self._env_token else None
        register_secret(self._env_token)
        self._post_token = post_token
        self._env_var = env_var
        self._clock = clock
        self._on_refresh = on_refresh
        self._sleep = sleep
        self._entry: TokenEntry | None = None
        self._lock = threading.Lock()
        self._env_won = False  # the env token is in use (no entry yet, or it replaced the entry)
        self._env_over_store = False  # ... and it replaced an existing store entry
        # (hash of a refresh token TikTok answered invalid_grant for, the error's reason): every later
        # refresh with that token fails at once instead of asking again (one request per run, not per stream).
        self._rejected: tuple[str, str] | None = None

    def access_token(self) -> str:
        """A usable access token; the fast path is a single attribute check with no lock."""
        entry = self._entry
        if entry is not None and entry.access_fresh(self._clock()):
            return entry.access_token  # type: ignore[return-value]
        return self._obtain(rejected=None)

    def invalidate(self, rejected: str) -> str:
        """The API rejected ``rejected`` (access_token_invalid): refresh unless another thread/process did."""
        return self._obtain(rejected=rejected)

    def preflight(self) -> None:
        """Before any request: the store answers and can be written, its entry (if any) decodes, and there is a
        refresh token to start from. Raises TokenStoreError or ReauthorizationRequired (``first_time``)."""
        self.store.probe(self.key)
        self.store.check_writable()
        self._choose(self.store.read(self.key).entry)

    def entry(self) -> TokenEntry | None:
        """The entry in use, or the one that would be used (reads the store, never calls the network)."""
        if self._entry is not None:
            return self._entry
        with contextlib.suppress(ReauthorizationRequired):
            return self._choose(self.store.get(self.key))
        return None

    def _obtain(self, rejected: str | None) -> str:
        with self._lock:
            now = self._clock()
            entry = self._entry
            if entry is not None and entry.access_token != rejected and entry.access_fresh(now):
                return entry.access_token  # type: ignore[return-value]
            with self.store.locked():
                entry, refreshed = self._settle(rejected)
            self._entry = entry
        if refreshed:
            if self._on_refresh is not None:
                self._on_refresh()
            logger.info("Refreshed TikTok access token for store entry '%s'; rotated refresh token persisted "
                        "to %s", self.key, self.store.location)
        return entry.access_token  # type: ignore[return-value]

    def _settle(self, rejected: str | None) -> tuple[TokenEntry, bool]:
        """Read the entry, refresh if it has no usable access token, store the rotation compare-and-swap.

        Returns (entry to use, whether this call refreshed). A file store runs this under its flock, so no
        other writer interferes; an object store has no lock, and two things make us re-read instead:

        - our write conflicts (the entry changed since we read it): see :meth:`_store_rotation`;
        - TikTok answers invalid_grant for the stored refresh token: another writer may have spent it a
          moment ago; if the entry changed since our read and holds another refresh token, use that one.
        """
        stored = self.store.read(self.key)  # re-read: another thread or process may have refreshed
        candidate = self._choose(stored.entry)
        for _ in range(_MAX_STORE_ROUNDS):
            if candidate.access_token != rejected and candidate.access_fresh(self._clock()):
                return candidate, False
            known_dead = self._rejected is not None and self._rejected[0] == hash_token(candidate.refresh_token)
            try:
                fresh = self._refresh(candidate)
            except ReauthorizationRequired:
                newer = None if known_dead else self._written_since(stored, candidate)
                if newer is None:
                    raise
                stored, candidate = newer, self._adopt(newer)
                continue
            newer = self._store_rotation(candidate, fresh, stored)
            if newer is None:
                return fresh, True
            stored, candidate = newer, self._adopt(newer)
        raise TokenStoreError(f"{self.store.describe(self.key)} kept changing while this run refreshed "
                              f"({_MAX_STORE_ROUNDS} rounds); more than one run per account at a time?")

    def _store_rotation(self, spent: TokenEntry, fresh: TokenEntry, read: Stored) -> Stored | None:
        """Persist ``fresh`` (obtained by spending ``spent``) over the version we read. None when stored.

        On a conflict we re-read. Every writer writes compare-and-swap, so whatever was stored since our read
        was obtained from that entry or later (or is a new authorization): a *different* refresh token there
        is at least as new as ours, and it is kept; we return it and drop ours. If the entry still holds the
        token we just spent (only its other fields were rewritten) or was deleted, TikTok's answer to us made
        ours the only valid one, so we write it over the version we now saw. Our own refresh token already
        there means our write landed and only its answer was lost (a retried PUT then fails its condition).
        """
        version = read.version
        for _ in range(_MAX_STORE_ROUNDS):
            try:
                self.store.write(self.key, fresh, expected=version)
                return None
            except StoreConflict:
                current = self.store.read(self.key)
            other = current.entry
            if other is not None and other.refresh_token == fresh.refresh_token:
                return None
            if other is not None and other.refresh_token != spent.refresh_token:
                logger.info("%s was updated by another writer while this run refreshed; using the newer "
                            "stored token, not this run's", self.store.describe(self.key))
                return current
            version = current.version
        raise TokenStoreError(f"could not store the rotated refresh token in {self.store.describe(self.key)}: "
                              f"{_MAX_STORE_ROUNDS} conflicting writes in a row; re-authorize with "
                              "tiktok-organic-authorize if the next run fails with invalid_grant")

    def _written_since(self, read: Stored, spent: TokenEntry) -> Stored | None:
        """After invalid_grant: the entry if another writer replaced it (new version, other refresh token)."""
        if self.store.exclusive_lock:
            return None  # nobody can have written while we hold the lock
        for delay in _REREAD_DELAYS:
            if delay:
                self._sleep(delay)
            current = self.store.read(self.key)
            other = current.entry
            if current.version != read.version and other is not None and \
                    other.refresh_token != spent.refresh_token:
                logger.info("TikTok rejected the refresh token just read from %s, and another writer has "
                            "stored a newer one since; using it", self.store.describe(self.key))
                return current
        return None

    def _adopt(self, stored: Stored) -> TokenEntry:
        """Use the entry another writer stored as it is (its lineage, not a re-decision of env vs store)."""
        self._env_won = self._env_over_store = False
        assert stored.entry is not None
        return stored.entry

    def _choose(self, stored: TokenEntry | None) -> TokenEntry:
        self._env_won = self._env_over_store = False
        env_hash = self._env_hash
        if stored is None:
            if not self._env_token:
                raise ReauthorizationRequired(
                    f"{who(self.key)} is not authorized yet: {self._env_var} is empty and the token "
                    f"store {self.store.location} has no entry '{self.key}'.", env_var=self._env_var,
                    key=self.key, first_time=True)
            self._env_won = True
            return TokenEntry(refresh_token=self._env_token, descends_from=env_hash)
        if env_hash is None or env_hash == stored.descends_from:
            return stored
        if env_hash == hash_token(stored.refresh_token):
            # The user copied the current stored token into the env: same lineage, remember it.
            return replace(stored, descends_from=env_hash)
        logger.info("%s holds a new refresh token (differs from the lineage of store entry '%s'); "
                    "the environment wins and replaces the stored tokens", self._env_var, self.key)
        self._env_won = self._env_over_store = True
        return TokenEntry(refresh_token=self._env_token, descends_from=env_hash)

    def _refresh(self, current: TokenEntry) -> TokenEntry:
        token_hash = hash_token(current.refresh_token)
        if self._rejected is not None and self._rejected[0] == token_hash:
            raise ReauthorizationRequired(self._rejected[1], env_var=self._env_var, key=self.key)
        form = {"grant_type": "refresh_token", "refresh_token": current.refresh_token}
        try:
            body = self._post_token(form)
        except ReauthorizationRequired as exc:
            source = (f"the refresh token from {self._env_var}" if self._env_won
                      else f"the refresh token in {self.store.describe(self.key)}")
            hint = ""
            if self._env_over_store:
                hint = (f" If you re-authorized with tiktok-organic-authorize, unset {self._env_var} so the "
                        "store entry is used.")
            reason = (f"{who(self.key)}: the refresh token was revoked or has expired (TikTok rejected "
                      f"{source}: {exc.reason}).{hint}")
            self._rejected = (token_hash, reason)
            raise ReauthorizationRequired(reason, env_var=self._env_var, key=self.key) from None
        return entry_from_token_response(body, now=self._clock(), descends_from=current.descends_from,
                                         previous=current)
