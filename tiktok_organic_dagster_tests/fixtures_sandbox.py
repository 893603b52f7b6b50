"""Pytest fixtures running the local TikTok sandbox over real HTTP (registered in conftest.pytest_plugins)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tiktok_organic_dagster.sandbox import SandboxConfig, SandboxServer


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """A started sandbox with 120 videos (small and fast), stopped after the test."""
    server = SandboxServer(SandboxConfig(video_count=120)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxServer]]:
    """``make(**SandboxConfig kwargs) -> started SandboxServer``; every server is stopped at teardown.

    ``video_count`` defaults to 120 here (not 300) to keep tests fast.
    """
    servers: list[SandboxServer] = []

    def make(**kwargs: Any) -> SandboxServer:
        kwargs.setdefault("video_count", 120)
        server = SandboxServer(SandboxConfig(**kwargs)).start()
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()
