"""`make dev`: the sandbox rule, the instance folder, and no process left behind after SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tiktok_organic_dagster.cli.dev import absolute_paths, dagster_home, env_file, mode_line, uses_sandbox

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("env", "sandbox"),
    [({}, True), ({"TIKTOK_CLIENT_ID": ""}, True), ({"TIKTOK_CLIENT_SECRET": "s", "TIKTOK_API_BASE_URL": "x"}, True),
     ({"TIKTOK_CLIENT_ID": "id"}, False), ({"TIKTOK_ORGANIC_CONFIG": "sources.yaml"}, False)],
)
def test_sandbox_rule(env, sandbox):
    assert uses_sandbox(env) is sandbox


def test_dot_env_counts_for_the_rule(tmp_path):
    assert env_file(tmp_path) == {}
    (tmp_path / ".env").write_text("TIKTOK_CLIENT_ID=awb123\nTIKTOK_CLIENT_SECRET=s\n")
    assert not uses_sandbox(env_file(tmp_path))


def test_the_rule_is_printed():
    assert mode_line({}, "http://127.0.0.1:5") == (
        "make dev: neither TIKTOK_CLIENT_ID nor TIKTOK_ORGANIC_CONFIG is set (environment or ./.env), so the UI runs "
        "on the sandbox TikTok API at http://127.0.0.1:5 (set either one to use your account)")
    assert mode_line({"TIKTOK_ORGANIC_CONFIG": "s.yaml"}) == (
        "make dev: TIKTOK_ORGANIC_CONFIG is set, so the UI runs on your TikTok account(s) (unset both "
        "TIKTOK_CLIENT_ID and TIKTOK_ORGANIC_CONFIG to use the sandbox)")
    assert mode_line({"TIKTOK_CLIENT_ID": "i", "TIKTOK_ORGANIC_CONFIG": "s.yaml"}).startswith(
        "make dev: TIKTOK_CLIENT_ID and TIKTOK_ORGANIC_CONFIG are set, so")


def test_instance_folder_and_paths(tmp_path):
    home = dagster_home({}, tmp_path)
    assert home == (tmp_path / ".dagster_home").resolve()
    assert (home / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
    own = tmp_path / "own"
    own.mkdir()
    (own / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    assert dagster_home({"DAGSTER_HOME": str(own)}, tmp_path) == own.resolve()
    assert (own / "dagster.yaml").read_text() == "telemetry: {enabled: false}\n"  # yours is kept
    (home / "dagster.yaml").write_text("stale: true\n")
    assert dagster_home({"DAGSTER_HOME": ".dagster_home"}, tmp_path) == home  # the project's folder, refreshed
    assert (home / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
    env = absolute_paths({"TIKTOK_ORGANIC_CONFIG": "sources.yaml", "TIKTOK_TOKEN_STORE": "s3://b/tokens.json"},
                         tmp_path)
    assert env["TIKTOK_ORGANIC_CONFIG"] == str(tmp_path / "sources.yaml")
    assert env["TIKTOK_DELTA_ROOT"] == str(tmp_path / "data" / "lakehouse")  # the default, spelled out
    assert env["TIKTOK_TOKEN_STORE"] == "s3://b/tokens.json"


# ------------------------------------------------------------------------------------------- the real thing
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes() -> dict[int, tuple[int, int, str, str]]:
    """pid -> (ppid, pgid, state, command) of every process, from ps (``-ww``: without a terminal ps cuts
    commands at 80 columns, which a long checkout path fills before the module name)."""
    out = subprocess.run(["ps", "-ww", "-e", "-o", "pid=,ppid=,pgid=,stat=,args="], capture_output=True, text=True,
                         check=True).stdout
    table = {}
    for line in out.splitlines():
        pid, ppid, pgid, stat, *args = line.split(None, 4)
        table[int(pid)] = (int(ppid), int(pgid), stat, args[0] if args else "")
    return table


def _tree(root: int) -> dict[int, tuple[int, int, str, str]]:
    """The process ``root`` started, directly or not, and every process of their groups."""
    table = _processes()
    found = {root}
    while True:
        more = {pid for pid, (ppid, *_rest) in table.items() if ppid in found} - found
        if not more:
            break
        found |= more
    groups = {table[p][1] for p in found if p in table}
    return {pid: row for pid, row in table.items() if pid in found or row[1] in groups}


def _alive(started: dict[int, tuple[int, int, str, str]], root: int) -> list[str]:
    """Those of ``started`` still running (same pid and command; zombies count as gone), and any process that
    has since joined one of their groups."""
    groups = {row[1] for pid, row in started.items() if pid != root}
    return [f"{pid} {row[3][:120]}" for pid, row in _processes().items()
            if pid != root and not row[2].startswith("Z")
            and ((pid in started and started[pid][3] == row[3]) or row[1] in groups)]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _locations(port: int) -> list[tuple[str, str]] | None:
    query = b'{"query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"}'
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [(e["name"], e["loadStatus"]) for e in entries]


def _dev_command(port: int) -> list[str]:
    """`make dev` itself when make is there (its recipe, run with this interpreter, never re-installing), or
    the module the recipe runs."""
    if shutil.which("make"):
        return ["make", "-s", "-f", str(ROOT / "Makefile"), "-o", ".venv/.installed-stamp", "dev",
                f"BIN={Path(sys.executable).parent}", f"ARGS=-p {port}"]
    return [sys.executable, "-m", "tiktok_organic_dagster.cli.dev", "-p", str(port)]


def test_make_dev_serves_the_workspace_location_and_leaves_no_process_after_sigterm(tmp_path):
    """Started from a scratch folder (its Delta tables and instance land there, not in the repo), the UI answers
    with the location named as in workspace.yaml and no warning about dagster.yaml; SIGTERM to `make dev` then
    stops webserver, daemon, code servers and run workers. (Before: 5 processes outlived it.)"""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOK_") and k != "DAGSTER_HOME"}
    # like the project folder: a dagster.yaml where `make dev` runs (dagster dev warned it "will not be used")
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    log_path = tmp_path / "dev.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(_dev_command(port), cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    started: dict[int, tuple[int, int, str, str]] = {}
    try:
        deadline = time.monotonic() + 180
        while (locations := _locations(port)) is None or any(status != "LOADED" for _, status in locations):
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
        workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
        assert [name for name, _ in locations] == [workspace["load_from"][0]["python_module"]["location_name"]]
        started = _tree(proc.pid)
        commands = " ".join(row[3] for row in started.values())
        assert "dagster_webserver" in commands and "dagster._daemon" in commands, commands
        # SIGTERM to the process group `make dev` leads, as a service manager or `kill -TERM -<pgid>` sends it
        os.killpg(proc.pid, signal.SIGTERM)
        stopped_by = time.monotonic() + 90
        while (left := _alive(started, proc.pid)) and time.monotonic() < stopped_by:
            time.sleep(0.5)
        assert left == [], left
        proc.wait(timeout=10)
        log = log_path.read_text()
        assert "make dev: SIGTERM received, stopping dagster dev" in log and "killing dagster dev" not in log
    finally:  # a failed run leaves nothing behind either (only what this test started, by pid)
        for line in _alive(started, proc.pid) if started else []:
            _kill(int(line.split()[0]))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # not reaped yet, so the group is still ours
        proc.wait(timeout=10)
    text = log_path.read_text()
    assert "will not be used" not in text
    assert ("make dev: neither TIKTOK_CLIENT_ID nor TIKTOK_ORGANIC_CONFIG is set (environment or ./.env), so the UI "
            "runs on the sandbox TikTok API at http://127.0.0.1:") in text
    assert (tmp_path / ".dagster_home" / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
