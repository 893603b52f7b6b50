"""OAuth state: authorization codes, refresh-token families with strict rotation, access tokens.

A *family* is one user authorization. Its refresh tokens rotate (strict: the superseded one gets
``invalid_grant``) but the family's expiry is fixed at first issuance + refresh TTL, as the classic docs say
("valid for 365 days after the initial issuance"). Access tokens expire after the access TTL and can be
invalidated early (revoke, expire, or the ``invalidate_access_after`` fault).

Every family, access token and code belongs to one *account* (user) of the app: rotation, revocation and
expiry act per account, and the data endpoints answer from the account that owns the access token. A
family may carry the scopes the user approved (authorize page); ``None`` means "whatever the app's live
``granted_scopes`` are", which is how the initial tokens and admin-issued codes behave.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import time
from dataclasses import dataclass

CODE_TTL_SECONDS = 600.0
_ALNUM = string.ascii_letters + string.digits


def _token(prefix: str) -> str:
    tail = "".join(secrets.choice(_ALNUM) for _ in range(28))
    return f"{prefix}{secrets.token_hex(16)}{tail}!{secrets.randbelow(10000):04d}"


@dataclass
class _Family:
    account: str
    expires_at: float
    scopes: tuple[str, ...] | None = None
    latest: str | None = None


@dataclass
class _Access:
    account: str
    expires_at: float
    scopes: tuple[str, ...] | None = None
    served: int = 0
    valid: bool = True


@dataclass
class _Code:
    account: str
    expires_at: float
    redirect_uri: str | None
    code_challenge: str | None
    scopes: tuple[str, ...] | None = None


class OAuthError(Exception):
    """An OAuth error response: ``error`` code, description, HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(error)
        self.error, self.description, self.status = error, description, status


@dataclass
class Grant:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    account: str = ""
    scopes: tuple[str, ...] | None = None  # None: the app's live granted_scopes


class TokenRegistry:
    """All token state of all accounts; callers hold the sandbox lock."""

    def __init__(self) -> None:
        self._refresh: dict[str, _Family] = {}
        self._access: dict[str, _Access] = {}
        self._codes: dict[str, _Code] = {}
        self._latest: dict[str, str] = {}  # account -> its most recently issued refresh token
        self.issued: list[str] = []  # every access/refresh token ever issued (for secret-leak scans)

    # ---- issuance ---------------------------------------------------------------------------------
    def new_family(
        self, account: str, refresh_ttl: float, token: str | None = None,
        scopes: tuple[str, ...] | None = None,
    ) -> str:
        fam = _Family(account=account, expires_at=time.time() + refresh_ttl, scopes=scopes)
        fam.latest = token or _token("rft.")
        self.issued.append(fam.latest)
        self._refresh[fam.latest] = fam
        self._latest[account] = fam.latest
        return fam.latest

    def issue_code(
        self, account: str, redirect_uri: str | None = None, code_challenge: str | None = None,
        code: str | None = None, scopes: tuple[str, ...] | None = None,
    ) -> str:
        code = code or secrets.token_urlsafe(48)
        self._codes[code] = _Code(account, time.time() + CODE_TTL_SECONDS, redirect_uri, code_challenge, scopes)
        return code

    def _grant(self, fam: _Family, refresh_token: str, access_ttl: int) -> Grant:
        now = time.time()
        access = _token("act.")
        self.issued.append(access)
        self._access[access] = _Access(account=fam.account, expires_at=now + access_ttl, scopes=fam.scopes)
        return Grant(access, int(access_ttl), refresh_token, max(0, int(fam.expires_at - now)), fam.account,
                     fam.scopes)

    def exchange_code(
        self,
        code: str,
        redirect_uri: str | None,
        code_verifier: str | None,
        access_ttl: int,
        refresh_ttl: int,
    ) -> Grant:
        entry = self._codes.pop(code, None)  # single use, even when the checks below fail
        if entry is None or entry.expires_at <= time.time():
            raise OAuthError("invalid_grant", "Authorization code is expired or invalid.")
        if entry.redirect_uri is not None and redirect_uri != entry.redirect_uri:
            raise OAuthError(
                "invalid_grant", "Redirect_uri is not matched with the uri when requesting code."
            )
        if entry.code_challenge is not None:
            digest = hashlib.sha256((code_verifier or "").encode()).hexdigest()  # TikTok desktop: hex
            if digest != entry.code_challenge:
                raise OAuthError("invalid_grant", "Code verifier is invalid.")
        rft = self.new_family(entry.account, refresh_ttl, scopes=entry.scopes)
        return self._grant(self._refresh[rft], rft, access_ttl)

    def refresh(self, refresh_token: str, access_ttl: int, strict: bool) -> Grant:
        fam = self._refresh.get(refresh_token)
        if fam is None or fam.expires_at <= time.time():
            raise OAuthError("invalid_grant", "Refresh token is invalid or expired.")
        new = _token("rft.")
        self.issued.append(new)
        if strict:
            for old in [t for t, f in self._refresh.items() if f is fam]:
                del self._refresh[old]
        self._refresh[new] = fam
        fam.latest = new
        self._latest[fam.account] = new
        return self._grant(fam, new, access_ttl)

    # ---- checks and admin ------------------------------------------------------------------------
    def check_access(self, token: str, invalidate_after: int) -> _Access | None:
        """The live access-token record, or None (unknown/expired/revoked/invalidated by fault)."""
        acc = self._access.get(token)
        if acc is None or not acc.valid or acc.expires_at <= time.time():
            return None
        if invalidate_after > 0 and acc.served >= invalidate_after:
            acc.valid = False
            return None
        return acc

    def account_of(self, credential: str) -> str | None:
        """The account a refresh token, access token or code belongs to (None if unknown); for accounting."""
        for table in (self._refresh, self._access, self._codes):
            rec = table.get(credential)
            if rec is not None:
                return rec.account
        return None

    def current_refresh_token(self, account: str) -> str | None:
        latest = self._latest.get(account)
        fam = self._refresh.get(latest) if latest else None
        return latest if fam is not None and fam.expires_at > time.time() else None

    def revoke_all(self, account: str | None = None) -> None:
        """Drop every refresh token, access token and code of ``account`` (None: of every account)."""
        if account is None:
            self._refresh.clear()
            self._access.clear()
            self._codes.clear()
            self._latest.clear()
            return
        for table in (self._refresh, self._access, self._codes):
            for key in [k for k, rec in table.items() if rec.account == account]:
                del table[key]
        self._latest.pop(account, None)

    def revoke_access(self, token: str) -> bool:
        """POST /v2/oauth/revoke/: as TikTok disconnects the app from that user, every grant of the token's
        account goes (refresh -> invalid_grant, data -> 401); other accounts keep theirs."""
        acc = self._access.get(token)
        if acc is None:
            return False
        self.revoke_all(acc.account)
        return True

    def expire_access(self, account: str | None = None) -> None:
        for acc in self._access.values():
            if account is None or acc.account == account:
                acc.expires_at = 0.0

    def expire_refresh(self, account: str | None = None) -> None:
        for fam in self._refresh.values():
            if account is None or fam.account == account:
                fam.expires_at = 0.0
