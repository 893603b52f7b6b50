"""The layout's rules, checked on the source: imports go one way, Dagster only in ``defs/``, no private
Dagster APIs, product code never imports the sandbox, and importing builds nothing."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tiktok_organic_dagster"
ROOT = PACKAGE.parent
# Each room may import itself and the rooms listed for it; nothing else of the package.
ALLOWED: dict[str, set[str]] = {
    "names": set(),
    "tiktok": {"names"},
    "lake": set(),
    "settings": {"names", "tiktok"},
    "sync": {"names", "tiktok", "lake", "settings"},
    "defs": {"names", "tiktok", "lake", "settings", "sync"},
    "cli": {"names", "tiktok", "lake", "settings", "sandbox", "defs"},
    "sandbox": set(),
    "__init__": set(),
}
MAX_LINES = 350


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _room(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[str]:
    """Every module an ``import`` or ``from ... import`` names, relative imports made absolute."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(("tiktok_organic_dagster", *path.relative_to(PACKAGE).parent.parts))
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                out.append(".".join([*base, *([node.module] if node.module else [])]))
            else:
                out.append(node.module or "")
    return out


def test_every_room_is_known():
    assert {_room(p) for p in _modules()} <= set(ALLOWED)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path: Path):
    room = _room(path)
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "dagster" or top.startswith("dagster_"):
            assert room == "defs", f"{path.relative_to(ROOT)} imports {name}: only defs/ may import dagster"
            assert not name.startswith("dagster._"), f"{path.relative_to(ROOT)} imports private {name}"
        if top != "tiktok_organic_dagster" or name == "tiktok_organic_dagster":
            continue
        target = name.split(".")[1]
        if target == room:
            continue
        assert target in ALLOWED[room], (
            f"{path.relative_to(ROOT)} ({room}) imports {name}: {room} may import only {sorted(ALLOWED[room])}")
        if target == "defs":
            assert path.relative_to(PACKAGE).as_posix() in {"cli/accounts.py", "cli/authorize.py"}, (
                f"{path.relative_to(ROOT)} imports the Dagster definitions: only the tools that register "
                "account partitions may")
        if target == "sandbox":
            assert path.relative_to(PACKAGE).as_posix() in {"cli/demo.py", "cli/demo_agency.py", "cli/dev.py"}, (
                f"{path.relative_to(ROOT)} imports the sandbox: product code never does (the demo may)")


@pytest.mark.parametrize("path", [p for p in _modules() if _room(p) != "sandbox"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_outgrows_one_sitting(path: Path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES} outside sandbox/)"


def test_the_rules_catch_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The checks above can fail: a lake module importing dagster, a sync module importing the sandbox."""
    fake = tmp_path / "tiktok_organic_dagster"
    (fake / "lake").mkdir(parents=True)
    (fake / "sync").mkdir()
    bad_lake = fake / "lake" / "bad.py"
    bad_lake.write_text("import dagster as dg\nfrom dagster._utils import x\n")
    bad_sync = fake / "sync" / "bad.py"
    bad_sync.write_text("from ..sandbox import SandboxServer\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="only defs/ may import dagster"):
        test_imports_follow_the_layers(bad_lake)
    with pytest.raises(AssertionError, match="sync may import only"):
        test_imports_follow_the_layers(bad_sync)


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_imports_build_nothing_with_invalid_settings_but_loading_the_location_fails():
    env = {**os.environ, "TIKTOK_SOURCE_DESCRIPTION": "x" * 200}
    code = (
        "import sys\n"
        "import tiktok_organic_dagster, tiktok_organic_dagster.sandbox, tiktok_organic_dagster.cli.authorize\n"
        "import tiktok_organic_dagster.tiktok, tiktok_organic_dagster.lake, tiktok_organic_dagster.sync\n"
        "import tiktok_organic_dagster.defs, tiktok_organic_dagster.cli.demo\n"
        "assert 'tiktok_organic_dagster.defs.definitions' not in sys.modules\n"
        "assert not [m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')], 'dagster imported'\n"
        "print('imported')\n"
    )
    proc = _run(code, env)
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr
    authorize = subprocess.run([sys.executable, "-m", "tiktok_organic_dagster.cli.authorize", "--help"], cwd=ROOT,
                               env=env, capture_output=True, text=True, timeout=120)
    assert authorize.returncode == 0 and "tiktok-organic-authorize" in authorize.stdout
    validate = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m",
                               "tiktok_organic_dagster"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=180)
    assert validate.returncode != 0
    assert "description (environment variable TIKTOK_SOURCE_DESCRIPTION)" in validate.stdout + validate.stderr
