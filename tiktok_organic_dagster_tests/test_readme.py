"""The README's commands work as written: its sandbox CLI block runs with bash and leaves the sandbox's videos
in Delta; every `make` target, console script, `.venv/bin/` program and relative link it names exists; the
settings-file example loads; the deployment guide's limits are the project's dagster.yaml.

The block runs in a temporary folder holding only a `.venv` link (to the environment running the tests, where
the package is installed) and a `dagster.yaml` link, so everything it writes (the env file, DAGSTER_HOME, the
Delta tables, the token store) lands there and not in the working tree. `bash -e` makes a failing line fail
the test instead of being hidden by the lines after it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import deltalake
import pytest
import yaml

from tiktok_organic_dagster.names import COMMIT_PREFIX, CONFIG_ENV, DEFAULT_SOURCE_NAME
from tiktok_organic_dagster.sandbox import SandboxConfig, SandboxServer
from tiktok_organic_dagster.settings import load_settings
from tiktok_organic_dagster.tiktok.streams import USER_COUNTERS, VIDEO_COUNTERS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
BLOCK_TIMEOUT_S = 300  # ~30 s on a quiet 2-core machine; generous for a loaded one


def marked_block(text: str, name: str) -> str:
    """The fenced block right after ``<!-- test: name -->``."""
    match = re.search(rf"<!-- test: {re.escape(name)} -->\s*\n```[a-z]*\n(.*?)\n```", text, re.DOTALL)
    assert match, f"README has no block marked <!-- test: {name} -->"
    return match.group(1) + "\n"


def code_text(text: str) -> str:
    """Inline code spans and fenced blocks: where commands are shown."""
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, re.DOTALL)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    return "\n".join([*fenced, *inline])


def venv_dir() -> Path:
    """The environment running the tests (the README's `.venv`): it has the package and its scripts."""
    for candidate in (ROOT / ".venv", Path(sys.prefix)):
        if (candidate / "bin" / "tiktok-organic-sandbox").exists() and (candidate / "bin" / "dagster").exists():
            return candidate
    pytest.fail(f"no environment with the console scripts installed (looked in {ROOT / '.venv'}, {sys.prefix})")


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


def test_sandbox_cli_block_runs_as_written(tmp_path):
    block = marked_block(README.read_text(), "sandbox-cli")
    work = tmp_path / "project"
    work.mkdir()
    (work / ".venv").symlink_to(venv_dir(), target_is_directory=True)
    (work / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
    (work / "block.sh").write_text(block)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKTOK_", "DAGSTER_"))}
    proc = subprocess.Popen(["bash", "-e", "block.sh"], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=BLOCK_TIMEOUT_S)
    finally:
        try:  # the block's background sandbox, should a line have failed before `kill`
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0, out[-6000:]

    started = json.loads(next(line for line in out.splitlines() if line.startswith('{"base_url"')))
    assert not _port_open(started["base_url"]), "the block left the sandbox running"
    assert (work / ".dagster_home" / "sandbox.env").exists() and (work / ".dagster_home" / "dagster.yaml").exists()

    # The sandbox's data is deterministic for a seed and a UTC day: rebuild it here (no server started).
    def truth_now() -> SandboxServer:
        return SandboxServer(SandboxConfig(video_count=started["videos"]))

    sandbox = truth_now()
    lake = work / "data" / "lakehouse" / "raw" / DEFAULT_SOURCE_NAME
    videos = {r["id"]: r for r in deltalake.DeltaTable(str(lake / "videos")).to_pyarrow_table().to_pylist()}
    if {v["id"] for v in sandbox.videos()} != videos.keys():  # the day turned between the block and here
        sandbox = truth_now()
    truth = {v["id"]: v for v in sandbox.videos()}
    assert videos.keys() == truth.keys() and len(videos) == started["videos"]
    assert all(videos[i][c] == truth[i][c] for i in truth for c in VIDEO_COUNTERS)
    history = deltalake.DeltaTable(str(lake / "videos_history")).to_pyarrow_table()
    assert set(history.column("id").to_pylist()) == truth.keys()
    [user] = deltalake.DeltaTable(str(lake / "user_info")).to_pyarrow_table().to_pylist()
    assert user["open_id"] == sandbox.user()["open_id"]
    assert all(user[c] == sandbox.user()[c] for c in USER_COUNTERS)
    # the full sync wrote every table; the asset materialize line then synced only the videos, incrementally
    [videos_commit] = deltalake.DeltaTable(str(lake / "videos")).history(1)
    [user_commit] = deltalake.DeltaTable(str(lake / "user_info")).history(1)
    assert (videos_commit["operation"], videos_commit[f"{COMMIT_PREFIX}sync_type"]) == ("MERGE", "incremental")
    assert user_commit[f"{COMMIT_PREFIX}sync_type"] == "full"
    assert user_commit[f"{COMMIT_PREFIX}run_id"] != videos_commit[f"{COMMIT_PREFIX}run_id"]


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", makefile, re.MULTILINE))


def _console_scripts() -> set[str]:
    return set(re.findall(r'"([\w-]+)\s*=\s*tiktok_organic_dagster[\w.]*:\w+"', (ROOT / "setup.py").read_text()))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_named_in_the_docs_exist(doc: Path):
    code = code_text(doc.read_text())
    targets = set(re.findall(r"(?:^|[\s;(&|])make ([a-z][\w-]*)", code, re.MULTILINE))
    assert targets <= _make_targets(), f"{doc.name}: make targets not in the Makefile: {targets - _make_targets()}"
    scripts = set(re.findall(r"\btiktok-organic-[a-z-]*[a-z]", code))
    assert scripts <= _console_scripts(), f"{doc.name}: not console scripts of setup.py: {scripts - _console_scripts()}"
    programs = set(re.findall(r"\.venv/bin/([\w-]+)", code))
    bin_dir = venv_dir() / "bin"
    missing = {p for p in programs if not (bin_dir / p).exists()}
    assert not missing, f"{doc.name}: not in the environment: {missing}"


def test_readme_names_the_make_targets_and_scripts():
    code = code_text(README.read_text())
    assert {"demo", "test", "dev", "lint"} <= set(re.findall(r"make ([a-z]+)", code))
    assert {"tiktok-organic-sandbox", "tiktok-organic-authorize"} <= _console_scripts()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
        if "://" in target:
            continue
        assert (doc.parent / target).exists(), f"{doc.relative_to(ROOT)} links to missing {target}"


def test_readme_settings_file_example_loads(tmp_path):
    text = README.read_text()
    match = re.search(r"```yaml\n(# sources\.yaml\n.*?)```", text, re.DOTALL)
    assert match, "README has no sources.yaml example"
    path = tmp_path / "sources.yaml"
    path.write_text(match.group(1))
    settings = load_settings({CONFIG_ENV: str(path)})
    tables = {tuple(s.asset_key_path(stream)) for s in settings.sources for stream in s.streams}
    folders = {s.name: {s.asset_key_path(stream)[1] for stream in s.streams} for s in settings.sources}
    assert len(settings.sources) >= 2 and len(tables) == sum(len(s.streams) for s in settings.sources)
    assert all(len(f) == 1 for f in folders.values()), f"one account's tables in several folders: {folders}"


def _yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(), re.DOTALL)


def test_deploy_guide_uses_the_projects_limits():
    project = yaml.safe_load((ROOT / "dagster.yaml").read_text())["concurrency"]
    instance, helm = (yaml.safe_load(b) for b in _yaml_blocks(ROOT / "docs" / "deploy.md")[:2])
    assert instance["concurrency"] == project
    assert instance["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    runs = project["runs"]
    assert helm["concurrency"] == {
        "pools": {"defaultLimit": project["pools"]["default_limit"]},
        "runs": {"maxConcurrentRuns": runs["max_concurrent_runs"],
                 "tagConcurrencyLimits": runs["tag_concurrency_limits"]},
    }
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
