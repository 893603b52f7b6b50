"""The dg component: scaffolded into a fresh dg project and checked, listed and launched against the sandbox
with the dg CLI (offline, this package installed in the same environment); and the same attributes through
the settings file and through the component build the same definitions."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox

import tiktok_organic_dagster
from tiktok_organic_dagster.defs.attributes import TikTokOrganicAttributes
from tiktok_organic_dagster.defs.component import TikTokOrganicComponent
from tiktok_organic_dagster.defs.definitions import build_source_definitions
from tiktok_organic_dagster.defs.scaffold import DEFAULT_TRANSLATION, defs_yaml
from tiktok_organic_dagster.names import (
    CLIENT_ID_ENV,
    CLIENT_SECRET_ENV,
    REFRESH_TOKEN_ENV,
    catalog_resource_key,
    catchup_sensor_name,
    client_resource_key,
    full_sync_job_name,
    schedule_name,
    sync_job_name,
)
from tiktok_organic_dagster.settings import load_settings
from tiktok_organic_dagster.tiktok.streams import USER_COUNTERS, VIDEO_COUNTERS
from tiktok_organic_dagster_tests.helpers import read_rows, sandbox_env

COMPONENT = f"{tiktok_organic_dagster.__name__}.{TikTokOrganicComponent.__name__}"
DG = str(Path(sys.executable).with_name("dg"))
DEFINITIONS_PY = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


def test_the_package_top_exports_the_component_registered_for_dg():
    assert "TikTokOrganicComponent" in dir(tiktok_organic_dagster)
    assert tiktok_organic_dagster.TikTokOrganicComponent is TikTokOrganicComponent
    registered = importlib.metadata.entry_points(group="dagster_dg_cli.registry_modules")
    assert tiktok_organic_dagster.__name__ in {e.value for e in registered}  # reinstall (pip install -e .) if not


def _new_project(root: Path) -> Path:
    """The smallest dg project: [tool.dg] in pyproject.toml and a package whose definitions load its defs."""
    (root / "myproj" / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "myproj"\nversion = "0.1.0"\n\n[tool.dg]\n'
                                         'directory_type = "project"\n\n[tool.dg.project]\nroot_module = "myproj"\n')
    (root / "myproj" / "__init__.py").write_text("")
    (root / "myproj" / "defs" / "__init__.py").write_text("")
    (root / "myproj" / "definitions.py").write_text(DEFINITIONS_PY)
    return root


def _env(tmp_path: Path, extra: dict[str, str], home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKTOK_", "DAGSTER_"))}
    (tmp_path / home).mkdir(exist_ok=True)
    return {**env, **extra, "DAGSTER_HOME": str(tmp_path / home), "DAGSTER_DISABLE_TELEMETRY": "1"}


def _dg(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([DG, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=240)
    return proc.returncode, out


def _uncomment(text: str, key: str) -> str:
    """Uncomment the scaffolded block of one attribute (its line and the deeper ones below it)."""
    lines, out, inside = text.splitlines(), [], False
    for line in lines:
        if line.startswith(f"  # {key}:"):
            inside = True
        elif inside and not line.startswith("  #   "):
            inside = False
        out.append("  " + line[4:] if inside else line)
    return "\n".join(out) + "\n"


def test_dg_project_scaffold_check_list_launch(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=40)
    source_env = sandbox_env(server, tmp_path)
    project = _new_project(tmp_path / "proj")

    # scaffold: every attribute shown, commented, under a header naming the environment variables
    code, out = _finish(_dg(["scaffold", "defs", COMPONENT, "tiktok_brand"], project, _env(tmp_path, {}, "h0")))
    assert code == 0, out
    path = project / "myproj" / "defs" / "tiktok_brand" / "defs.yaml"
    text = path.read_text()
    header = text.split("type:")[0]
    assert all(var in header for var in (CLIENT_ID_ENV, CLIENT_SECRET_ENV, REFRESH_TOKEN_ENV))
    assert yaml.safe_load(text) == {"type": COMPONENT, "attributes": {"name": "tiktok_brand"}}
    for attribute in TikTokOrganicAttributes.model_fields:
        assert f"  # {attribute}:" in text or f"  {attribute}:" in text, attribute

    # edit it: a table prefix, videos INCREMENTAL (any case), translated keys, state paths from env
    text = _uncomment(text.replace("  # table_prefix: ''", "  table_prefix: tt_"), "streams")
    text = text.replace("sync_type: INCREMENTAL", "sync_type: incremental")
    text += ("  translation:\n    key: \"tiktok/{{ table }}\"\n    group_name: tiktok\n"
             "    tags: {team: \"{{ source }}\"}\n"
             "  delta_root: \"{{ env.TIKTOK_DELTA_ROOT }}\"\n  token_store: \"{{ env.TIKTOK_TOKEN_STORE }}\"\n")
    path.write_text(text)
    # a second source in the same project: its own name and folder
    other = project / "myproj" / "defs" / "tiktok_other"
    other.mkdir()
    (other / "defs.yaml").write_text(defs_yaml(COMPONENT, "tiktok_other").replace("  # folder: tiktok_organic",
                                                                                   "  folder: other"))
    # wrong attributes, each project with the good one plus one bad file
    bad_key, bad_values = shutil.copytree(project, tmp_path / "bad_key"), shutil.copytree(project, tmp_path / "bad_v")
    bad = bad_key / "myproj" / "defs" / "tiktok_other" / "defs.yaml"
    bad.write_text(bad.read_text().replace("  # table_prefix: ''", "  tabel_prefix: x_"))
    bad = bad_values / "myproj" / "defs" / "tiktok_other" / "defs.yaml"
    bad.write_text(_uncomment(bad.read_text(), "trigger").replace("cron: 0 6 * * *", "cron: 0 6 * *")
                   .replace("  # description: TikTok organic profile and videos", "  description: " + "x" * 141))

    tables = ["tiktok/tt_user_info", "tiktok/tt_user_info_history", "tiktok/tt_videos", "tiktok/tt_videos_history"]
    # run side by side: each dg process spends most of its time importing dagster
    runs = {
        "check": _dg(["check", "defs"], project, _env(tmp_path, source_env, "h1")),
        "list": _dg(["list", "defs", "--json"], project, _env(tmp_path, source_env, "h2")),
        "launch": _dg(["launch", "--assets", ",".join(tables), "--config-json",
                       json.dumps({"execution": {"config": {"in_process": {}}}})], project,
                      _env(tmp_path, source_env, "h3")),
        "bad_key": _dg(["check", "defs"], bad_key, _env(tmp_path, source_env, "h4")),
        "bad_values": _dg(["check", "defs"], bad_values, _env(tmp_path, source_env, "h5")),
    }
    results = {name: _finish(proc) for name, proc in runs.items()}

    code, out = results["check"]
    assert code == 0 and "All definitions loaded successfully" in out, out

    code, out = results["list"]
    assert code == 0, out
    listed = json.loads(out[out.index("{"):])
    assert {a["asset_key"] for a in listed["assets"]} == {
        *tables, "raw/other/user_info", "raw/other/user_info_history", "raw/other/videos", "raw/other/videos_history"}
    videos = next(a for a in listed["assets"] if a["asset_key"] == "tiktok/tt_videos")
    assert videos["group_name"] == "tiktok" and {"key": "team", "value": "tiktok_brand"} in videos["tags"]
    assert "Sync: INCREMENTAL" in videos["description"]
    for source in ("tiktok_brand", "tiktok_other"):
        assert {sync_job_name(source), full_sync_job_name(source)} <= {j["name"] for j in listed["jobs"]}
        assert {schedule_name(sync_job_name(source)), schedule_name(full_sync_job_name(source))} <= {
            s["name"] for s in listed["schedules"]}
        assert catchup_sensor_name(source) in {s["name"] for s in listed["sensors"]}
        assert {client_resource_key(source), catalog_resource_key(source)} <= {r["name"] for r in listed["resources"]}

    code, out = results["launch"]
    assert code == 0, out[-3000:]
    truth = {v["id"]: v for v in server.videos()}
    rows = {r["id"]: r for r in read_rows(source_env, "tt_videos")}  # translation renames assets, not tables
    assert rows.keys() == truth.keys()
    assert all(rows[i][c] == truth[i][c] for i in truth for c in VIDEO_COUNTERS)
    [user] = read_rows(source_env, "tt_user_info")
    assert all(user[c] == server.user()[c] for c in USER_COUNTERS)
    assert {r["id"] for r in read_rows(source_env, "tt_videos_history")} == truth.keys()

    code, out = results["bad_key"]
    # named with what is allowed: by the schema check ("not one of [...]") or, as dg 1.13 schema-checks one
    # defs.yaml per component type, by loading ("did you mean ...?")
    assert code != 0 and "tabel_prefix" in out, out
    assert "did you mean table_prefix?" in out or "'table_prefix', " in out, out
    code, out = results["bad_values"]
    assert code != 0, out
    assert "attributes.description" in out and "String should have at most 140 characters" in out, out
    assert "attributes.trigger.cron" in out and "is not a valid cron expression" in out, out


ATTRIBUTES = {
    "name": "brand_a",
    "description": "Brand A's account",
    "credentials": {"client_id_env": "A_ID", "client_secret_env": "A_SECRET", "refresh_token_env": "A_REFRESH"},
    "layer": "bronze",
    "table_prefix": "a_",
    "streams": {"user_info": {"sync_type": "FULL_TABLE"}, "videos": {"sync_type": "incremental", "lookback_days": 3}},
    "trigger": {"cron": "30 5 * * *", "timezone": "Europe/Berlin"},
    "full_sync": {"cron": "0 2 * * 1", "grace_hours": 2},
    "delta_log_retention_days": 14,
}


# Dagster adds these to a component's assets: the defs.yaml's line and the component's type
COMPONENT_METADATA = {"dagster/code_references", "dagster/component_origin"}


def _shape(defs: dg.Definitions) -> dict[str, object]:
    """What a source's definitions are made of, comparable across two builds."""
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    specs = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        metadata = {k: v for k, v in node.metadata.items() if k not in COMPONENT_METADATA}
        specs[key.to_user_string()] = (metadata, node.description, node.group_name, node.tags, node.owners,
                                       node.kinds, node.freshness_policy)
    return {
        "assets": specs,
        "checks": sorted(k.to_user_string() for k in graph.asset_check_keys),
        "jobs": {j: (defs.resolve_job_def(j).tags, defs.resolve_job_def(j).run_config) for j in repo.job_names
                 if not j.startswith("__")},
        "schedules": {s.name: (s.cron_schedule, s.execution_timezone, s.job_name, s.default_status)
                      for s in repo.schedule_defs},
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "resources": {k: type(v).__name__ for k, v in (defs.resources or {}).items()},
    }


def test_same_attributes_through_settings_file_and_component_build_the_same_definitions(tmp_path):
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(yaml.safe_dump({"sources": [ATTRIBUTES]}))
    [source] = load_settings({"TIKTOK_ORGANIC_CONFIG": str(settings_file)}).sources
    from_settings = build_source_definitions(source)

    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=TikTokOrganicComponent, defs_path="brand_a",
                                          defs_yaml_contents={"type": COMPONENT, "attributes": ATTRIBUTES})
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, from_component):
            assert isinstance(component, TikTokOrganicComponent)
            assert component.source == source
            assert _shape(from_component) == _shape(from_settings)
        # the translation the scaffold shows as the default is the default
        path = sandbox.scaffold_component(
            component_cls=TikTokOrganicComponent, defs_path="brand_a_translated",
            defs_yaml_contents={"type": COMPONENT, "attributes": {**ATTRIBUTES, "translation": DEFAULT_TRANSLATION}})
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, translated):
            assert component.translate is not None
            assert _shape(translated) == _shape(from_settings)


def test_scaffolded_defaults_are_the_models_defaults():
    """Uncommenting every line of a scaffolded defs.yaml changes nothing."""
    text = defs_yaml(COMPONENT)
    for key in TikTokOrganicAttributes.model_fields:
        text = _uncomment(text, key)
    attributes = yaml.safe_load(text)["attributes"]
    translation = attributes.pop("translation")
    assert TikTokOrganicAttributes.model_validate(attributes).source_settings() == \
        TikTokOrganicAttributes().source_settings()
    assert set(translation) == set(TikTokOrganicAttributes.model_fields["translation"].annotation.model_fields)


def test_scaffold_names_the_source_after_the_option_or_the_folder():
    with create_defs_folder_sandbox() as sandbox:
        named = sandbox.scaffold_component(component_cls=TikTokOrganicComponent, defs_path="x",
                                           scaffold_params={"name": "brand_a"})
        folder = sandbox.scaffold_component(component_cls=TikTokOrganicComponent, defs_path="Brand-B")
        odd = sandbox.scaffold_component(component_cls=TikTokOrganicComponent, defs_path="2nd")
        names = [yaml.safe_load((p / "defs.yaml").read_text())["attributes"]["name"] for p in (named, folder, odd)]
    assert names == ["brand_a", "brand_b", "tiktok_organic"]


@pytest.mark.parametrize("translation, message", [
    ({"key": "tiktok/{{ stream }}"}, "put {{ table }} in the key"),
    ({"group_name": "{{ nope }}"}, "'nope' not found in scope"),
])
def test_translation_errors_name_the_attribute(translation, message):
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=TikTokOrganicComponent, defs_path="t",
                                          defs_yaml_contents={"type": COMPONENT,
                                                              "attributes": {"translation": translation}})
        with pytest.raises(Exception) as err:  # noqa: B017 - Dagster wraps the component's error
            with sandbox.load_component_and_build_defs(defs_path=path):
                pass
        text = "\n".join(str(e) for e in (err.value, *_chain(err.value)))
        assert "translation" in text and message in text, text


def _chain(exc: BaseException) -> list[BaseException]:
    out = []
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        out.append(exc)
    return out


@pytest.mark.parametrize("attributes, message", [
    ({"tabel_prefix": "x_"}, "tabel_prefix: unknown setting, did you mean table_prefix?"),
    ({"streams": {"videos": {"sync_typ": "FULL_TABLE"}}},
     "streams.videos.sync_typ: unknown setting, did you mean sync_type?"),
    ({"translation": {"grup_name": "x"}}, "translation.grup_name: unknown setting, did you mean group_name?"),
])
def test_an_unknown_attribute_gets_the_settings_files_did_you_mean(attributes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TikTokOrganicAttributes.model_validate(attributes)
