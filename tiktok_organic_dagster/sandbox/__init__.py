"""Local TikTok Open API v2 simulator ("sandbox") for tests, demos and benchmarks.

``SandboxServer(SandboxConfig(...)).start()`` serves the OAuth token/revoke endpoints, user/info,
video/list and video/query on ``base_url`` with deterministic synthetic data, strict refresh-token
rotation, per-field scopes, a sliding-window rate limiter and fault injection (``Faults``).
Run standalone with ``python -m tiktok_organic_dagster.sandbox`` (see ``cli``).
"""

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
