"""OAuth state: authorization codes, refresh-token families with strict rotation, access tokens.

A *family* is one user authorization. Its refresh tokens rotate (strict: the superseded one gets
``invalid_grant``) but the family's expiry is fixed at first issuance + refresh TTL, as the classic docs say
("valid for 365 days after the initial issuance"). Access tokens expire after the access TTL and can be
invalidated early (revoke, expire, or the ``invalidate_access_after`` fault).
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
    expires_at: float
    latest: str | None = None


@dataclass
class _Access:
    expires_at: float
    served: int = 0
    valid: bool = True


@dataclass
class _Code:
    expires_at: float
    redirect_uri: str | None
    code_challenge: str | None


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


class TokenRegistry:
    """All token state; callers hold the sandbox lock."""

    def __init__(self) -> None:
        self._refresh: dict[str, _Family] = {}
        self._access: dict[str, _Access] = {}
        self._codes: dict[str, _Code] = {}
        self._latest: str | None = None
        self.issued: list[str] = []  # every access/refresh token ever issued (for secret-leak scans)

    # ---- issuance ---------------------------------------------------------------------------------
    def new_family(self, refresh_ttl: float, token: str | None = None) -> str:
        fam = _Family(expires_at=time.time() + refresh_ttl)
        fam.latest = token or _token("rft.")
        self.issued.append(fam.latest)
        self._refresh[fam.latest] = fam
        self._latest = fam.latest
        return fam.latest

    def issue_code(
        self, redirect_uri: str | None = None, code_challenge: str | None = None, code: str | None = None
    ) -> str:
        code = code or secrets.token_urlsafe(48)
        self._codes[code] = _Code(time.time() + CODE_TTL_SECONDS, redirect_uri, code_challenge)
        return code

    def _grant(self, fam: _Family, refresh_token: str, access_ttl: int) -> Grant:
        now = time.time()
        access = _token("act.")
        self.issued.append(access)
        self._access[access] = _Access(expires_at=now + access_ttl)
        return Grant(access, int(access_ttl), refresh_token, max(0, int(fam.expires_at - now)))

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
        rft = self.new_family(refresh_ttl)
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
        self._latest = new
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

    def current_refresh_token(self) -> str | None:
        fam = self._refresh.get(self._latest) if self._latest else None
        return self._latest if fam is not None and fam.expires_at > time.time() else None

    def revoke_all(self) -> None:
        self._refresh.clear()
        self._access.clear()
        self._codes.clear()
        self._latest = None

    def revoke_access(self, token: str) -> bool:
        """POST /v2/oauth/revoke/: drops the access token and (as TikTok disconnects the app) all grants."""
        if token not in self._access:
            return False
        self.revoke_all()
        return True

    def expire_access(self) -> None:
        for acc in self._access.values():
            acc.expires_at = 0.0

    def expire_refresh(self) -> None:
        for fam in self._refresh.values():
            fam.expires_at = 0.0
