"""A run as in a container that starts empty: a new working directory and HOME, nothing kept from before."""

from __future__ import annotations

from pathlib import Path

import pytest


def enter_fresh_run(tmp_path: Path, run: int, monkeypatch: pytest.MonkeyPatch) -> Path:
    """chdir into ``<tmp>/run<N>/cwd`` with ``HOME=<tmp>/run<N>/home`` (both new and empty); returns ``run<N>``."""
    base = tmp_path / f"run{run}"
    (base / "cwd").mkdir(parents=True)
    (base / "home").mkdir()
    monkeypatch.chdir(base / "cwd")
    monkeypatch.setenv("HOME", str(base / "home"))
    return base


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]
