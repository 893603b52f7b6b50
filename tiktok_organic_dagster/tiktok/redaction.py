"""Secret redaction: the safeguard every message of the client passes through.

A token or the client secret must never reach a log, a Dagster event or a traceback, even if a server or
``requests`` echoes one back. Exact registered values are removed first, then anything shaped like a token.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

# Shapes that look like TikTok tokens or secret-bearing key/value pairs; a safeguard on top of the
# exact-value registry below (which covers secrets of any shape, e.g. the client secret).
_TOKEN_PATTERNS = re.compile(
    r"\b(?P<tok>(?:act|rft|clt)\.)[A-Za-z0-9!._~+/=-]{6,}"
    r"|(?P<bearer>Bearer\s+)[A-Za-z0-9!._~+/=-]+"
    r"|(?P<kv>\b(?:client_secret|refresh_token|access_token|code)=)[^&\s\"']+"
    r"|(?P<js>\"(?:client_secret|refresh_token|access_token)\"\s*:\s*\")[^\"]+",
    re.IGNORECASE,
)
REDACTED = "***"

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_secrets_sorted: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Remember an exact secret value (client secret, tokens) so :func:`redact` removes it anywhere."""
    global _secrets_sorted
    if not value or len(value) < 4 or value in _secrets:
        return
    with _secrets_lock:
        _secrets.add(value)
        # Longest first so a secret containing another is removed whole.
        _secrets_sorted = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Return ``text`` with registered secrets, ``extra`` values and token-like strings replaced."""
    for secret in (*extra, *_secrets_sorted):
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return _TOKEN_PATTERNS.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    prefix = match.group("tok") or match.group("bearer") or match.group("kv") or match.group("js") or ""
    return prefix + REDACTED


class RedactingFilter(logging.Filter):
    """Logging filter that scrubs secrets from a record's final message (msg % args) before any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # malformed args: drop them rather than risk leaking them raw
            message = str(record.msg)
        clean = redact(message)
        record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            # Pre-render the traceback text redacted; handlers reuse exc_text instead of re-formatting.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def client_logger() -> logging.Logger:
    """The client's logger ("tiktok_organic_dagster.tiktok") with the redaction filter installed."""
    log = logging.getLogger("tiktok_organic_dagster.tiktok")
    if not any(isinstance(f, RedactingFilter) for f in log.filters):
        log.addFilter(RedactingFilter())
    return log

