"""The code location loads, is wired as documented, and refuses bad settings at load time."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (setup.py allows it); dagster itself depends on tomli
    import tomli as tomllib

from tiktok_organic_dagster.defs.definitions import build_definitions
from tiktok_organic_dagster.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_workspace_and_pyproject_point_at_the_same_module():
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    [entry] = workspace["load_from"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = pyproject["tool"]["dagster"]
    assert entry["python_module"]["module_name"] == tool["module_name"] == "tiktok_organic_dagster.defs.definitions"
    assert entry["python_module"]["location_name"] == tool["code_location_name"]
    assert pyproject["tool"]["dg"]["project"]["code_location_target_module"] == tool["module_name"]


def test_package_reexports_the_lazy_definitions():
    """`dagster ... -m tiktok_organic_dagster` finds the code location at the package top (lazily)."""
    import tiktok_organic_dagster
    from tiktok_organic_dagster.defs.definitions import defs

    assert "definitions" in dir(tiktok_organic_dagster)
    assert tiktok_organic_dagster.definitions is defs


def test_default_definitions_are_complete():
    defs = build_definitions(load_settings({}))
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {"tiktok_organic_sync", "tiktok_organic_full_sync"} <= set(repo.job_names)
    assert {s.name for s in repo.schedule_defs} == {
        "tiktok_organic_sync_schedule", "tiktok_organic_full_sync_schedule"}
    assert {s.name for s in repo.sensor_defs} == {"tiktok_organic_full_sync_catchup_sensor"}
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {"raw/tiktok_organic/user_info", "raw/tiktok_organic/user_info_history",
                    "raw/tiktok_organic/videos", "raw/tiktok_organic/videos_history"}
    videos = repo.asset_graph.get(dg.AssetKey(["raw", "tiktok_organic", "videos"]))
    assert videos.group_name == "tiktok_organic"
    assert set(videos.kinds) == {"tiktok", "deltalake"}
    assert videos.freshness_policy is not None
    checks = {(c.asset_key.to_user_string(), c.name) for c in repo.asset_graph.asset_check_keys}
    assert ("raw/tiktok_organic/videos", "unique_non_null_key") in checks
    assert ("raw/tiktok_organic/videos", "non_negative_counters") in checks
    assert ("raw/tiktok_organic/videos_history", "lifetime_counters_never_decrease") in checks
    schedule = repo.get_schedule_def("tiktok_organic_sync_schedule")
    assert schedule.cron_schedule == "0 6 * * *"
    # the full-sync job forces FULL_TABLE on every stream and both jobs carry the per-source run tag
    full_job = defs.resolve_job_def("tiktok_organic_full_sync")
    assert full_job.run_config["ops"] == {
        "tiktok_organic__sync": {"config": {"full_refresh": True}},
    }
    assert full_job.tags["tiktok_organic/source"] == "tiktok_organic"
    sync_job = defs.resolve_job_def("tiktok_organic_sync")
    assert not (sync_job.run_config or {}).get("ops")
    assert sync_job.tags["tiktok_organic/source"] == "tiktok_organic"


def test_two_sources_get_their_own_jobs_and_resources(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(
        "sources:\n"
        "  - name: brand_a\n    table_prefix: a_\n"
        "  - name: brand_b\n    table_prefix: b_\n    full_sync: {enabled: false}\n"
        "    credentials: {client_id_env: B_ID, client_secret_env: B_SECRET, refresh_token_env: B_REFRESH}\n"
    )
    defs = build_definitions(load_settings({"TIKTOK_ORGANIC_CONFIG": str(path)}))
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {"brand_a_sync", "brand_a_full_sync", "brand_b_sync", "brand_b_full_sync"} <= set(repo.job_names)
    assert {s.name for s in repo.sensor_defs} == {"brand_a_full_sync_catchup_sensor"}
    assert {"brand_a_tiktok", "brand_a_delta", "brand_b_tiktok", "brand_b_delta"} <= set(defs.resources)


def _validate(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOK_")}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "tiktok_organic_dagster.defs.definitions"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_dagster_definitions_validate_cli():
    ok = _validate({})
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = _validate({"TIKTOK_SOURCE_DESCRIPTION": "x" * 141})
    assert bad.returncode != 0
    assert "description" in bad.stdout + bad.stderr
    assert "TIKTOK_SOURCE_DESCRIPTION" in bad.stdout + bad.stderr
