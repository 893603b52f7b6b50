"""Local TikTok Open API v2 simulator ("sandbox") for tests, demos and benchmarks.

``SandboxServer(SandboxConfig(...)).start()`` serves the OAuth token/revoke endpoints, user/info,
video/list and video/query on ``base_url`` with deterministic synthetic data, strict refresh-token
rotation, per-field scopes, a sliding-window rate limiter and fault injection (``Faults``). One app may
have several accounts (``SandboxConfig(accounts=3)``), each with its own tokens, profile and videos, and a
consent page at ``/v2/auth/authorize/`` (see ``consent``) to authorize them as TikTok's web flow does.
Run standalone with ``python -m tiktok_organic_dagster.sandbox`` (see ``cli``).
"""

from .accounts import ACCOUNT_NAME_RE
from .cli import main
from .config import (
    DEFAULT_SCOPES,
    EXTRA_FIELD_NAME,
    MISSING_FIELD_CYCLE,
    USER_FIELD_SCOPES,
    VIDEO_FIELDS,
    Faults,
    SandboxConfig,
)
from .server import SandboxServer

__all__ = [
    "ACCOUNT_NAME_RE",
    "DEFAULT_SCOPES",
    "EXTRA_FIELD_NAME",
    "MISSING_FIELD_CYCLE",
    "USER_FIELD_SCOPES",
    "VIDEO_FIELDS",
    "Faults",
    "SandboxConfig",
    "SandboxServer",
    "main",
]
