"""Secrets never leave the token store; settings can never point a table outside the Delta root.

The leak scan runs real syncs (a rotation mid-run, 429 warnings, a failed run on a revoked token, the
re-authorization) against a persistent sqlite Dagster instance in a temp DAGSTER_HOME, then looks for the
client secret and every token the sandbox issued in: captured stdout/stderr (DEBUG logging on), the event
log and run storage (raw bytes of every file under DAGSTER_HOME), what the GraphQL API shows (run config,
resource config, run logs, materialization metadata), the Delta tables (raw bytes and decoded values of
every data and checkpoint file) and every other file under the test's temp folder except the token store.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import instance_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster_graphql.test.utils import execute_dagster_graphql

from tiktok_organic_dagster.cli import authorize
from tiktok_organic_dagster.lake import CatalogConfigError, DeltaCatalog
from tiktok_organic_dagster.names import CLIENT_RESOURCE
from tiktok_organic_dagster.sandbox import Faults
from tiktok_organic_dagster.settings import SettingsError, load_settings
from tiktok_organic_dagster_tests.fixtures_faults import FULL, SYNC, failure_text, run
from tiktok_organic_dagster_tests.helpers import patched_env, sandbox_env

TOKEN_SHAPE = re.compile(rb"(?:act|rft)\.[A-Za-z0-9]{20,}")
LOCATION = "tiktok_organic_dagster"

RUNS_QUERY = """
query { runsOrError { __typename ... on Runs { results { runId status runConfigYaml tags { key value } } } } }
"""
RESOURCES_QUERY = """
query($selector: RepositorySelector!) {
  allTopLevelResourceDetailsOrError(repositorySelector: $selector) {
    __typename ... on ResourceDetailsList { results { name configuredValues { key value type } } }
  }
}
"""
LOGS_QUERY = """
query($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level }
        ... on ExecutionStepFailureEvent { error { message stack causes { message stack } } }
        ... on RunFailureEvent { error { message stack } }
        ... on MaterializationEvent {
          metadataEntries {
            label
            ... on TextMetadataEntry { text }
            ... on MarkdownMetadataEntry { mdStr }
            ... on PathMetadataEntry { path }
            ... on IntMetadataEntry { intValue }
            ... on FloatMetadataEntry { floatValue }
          }
        }
      }
    }
  }
}
"""


def _leaks(blob: bytes, secrets: list[bytes]) -> list[str]:
    found = [f"secret #{i} ({len(s)} chars)" for i, s in enumerate(secrets) if s in blob]
    if TOKEN_SHAPE.search(blob):
        found.append("token-shaped string " + TOKEN_SHAPE.search(blob).group()[:7].decode() + "...")
    return found


def _decoded_parquet(path: Path) -> bytes:
    return json.dumps(pq.read_table(path).to_pylist(), default=str).encode()


def test_no_secret_in_anything_the_project_writes_or_prints(sandbox_factory, tmp_path, capfd):
    server = sandbox_factory(video_count=60)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = sandbox_env(server, tmp_path, DAGSTER_HOME=str(home))
    store = Path(env["TIKTOK_TOKEN_STORE"])
    (tmp_path / "defs.py").write_text(
        "from tiktok_organic_dagster.defs.definitions import build_definitions\n"
        "from tiktok_organic_dagster.settings import load_settings\n"
        "defs = build_definitions(load_settings())\n"
    )
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)  # everything logged reaches the captured stderr
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    outputs: list[str] = []
    try:
        with patched_env(env), instance_for_test(temp_dir=str(home)) as instance:
            server.set_faults(Faults(invalidate_access_after=2, status_429_every=6, status_500_every=11))
            first = run(FULL, env, server, instance)  # several rotations mid-run, retries logged
            assert first.success
            server.set_faults(Faults())
            server.add_videos(2)
            assert run(SYNC, env, server, instance).success
            server.revoke_all_tokens()
            failed = run(SYNC, env, server, instance)  # the error path must not leak either
            assert not failed.success and "re-authorize" in failure_text(failed)
            code = server.issue_authorization_code()
            assert authorize.main(["--redirect-uri", "https://example.test/cb", f"--code={code}",
                                   "--api-base-url", server.base_url]) == 0
            assert run(SYNC, env, server, instance).success
            for result in (first, failed):
                for event in result.get_asset_materialization_events():
                    outputs.append(repr(event.materialization.metadata))

            origin = InProcessCodeLocationOrigin(
                LoadableTargetOrigin(executable_path=sys.executable, python_file=str(tmp_path / "defs.py"),
                                     attribute="defs", working_directory=str(tmp_path)),
                location_name=LOCATION,
            )
            with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as process_ctx:
                ctx = process_ctx.create_request_context()
                runs = execute_dagster_graphql(ctx, RUNS_QUERY).data["runsOrError"]["results"]
                assert len(runs) == 4 and all(CLIENT_RESOURCE in r["runConfigYaml"] for r in runs)
                outputs.append(json.dumps(runs))
                for r in runs:
                    outputs.append(json.dumps(execute_dagster_graphql(ctx, LOGS_QUERY, {"runId": r["runId"]}).data))
                selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
                resources = execute_dagster_graphql(ctx, RESOURCES_QUERY, {"selector": selector}).data
                values = {v["key"]: v for res in resources["allTopLevelResourceDetailsOrError"]["results"]
                          if res["name"] == CLIENT_RESOURCE for v in res["configuredValues"]}
                # the UI shows the variable's name; the secret itself is read where the run executes
                assert values["client_secret_env"] == {"key": "client_secret_env", "value": '"TIKTOK_CLIENT_SECRET"',
                                                       "type": "VALUE"}
                assert values.get("client_secret", {}).get("value") in (None, '""')
                outputs.append(json.dumps(resources))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    captured = capfd.readouterr()
    outputs += [captured.out, captured.err]

    secrets = [server.client_secret, code, *server.issued_tokens()]
    assert server.initial_refresh_token in secrets and len(secrets) >= 9  # rotations really happened
    secret_bytes = [s.encode() for s in secrets]
    assert "Refreshed TikTok access token" in captured.err  # the scan saw real client logs
    problems = [f"output #{i}: {leak}" for i, text in enumerate(outputs)
                for leak in _leaks(text.encode(), secret_bytes)]
    scanned: dict[Path, bytes] = {}
    for path in sorted(tmp_path.rglob("*")):
        if not path.is_file() or path == store:
            continue
        blobs = [path.read_bytes()]
        if path.suffix == ".parquet":
            blobs.append(_decoded_parquet(path))  # data pages are compressed: scan the values too
        scanned[path] = b"\n".join(blobs)
        problems += [f"{path.relative_to(tmp_path)}: {leak}" for b in blobs for leak in _leaks(b, secret_bytes)]
    assert problems == []
    # the scan looked at the right bytes: the event log's failure text and the synced values are in them
    storage = b"".join(blob for path, blob in scanned.items() if path.is_relative_to(home))
    assert b"ReauthorizationRequired" in storage and b"Refreshed TikTok access token" in storage
    lake = b"".join(blob for path, blob in scanned.items() if "lake" in path.parts)
    assert all(v["id"].encode() in lake and v["share_url"].encode() in lake for v in server.videos())
    # the token store is the one place holding them, and only its owner can read it
    assert store.stat().st_mode & 0o777 == 0o600
    assert server.current_refresh_token() in store.read_text()


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"TIKTOK_FOLDER": "../outside"}, "TIKTOK_FOLDER"),
        ({"TIKTOK_LAYER": ".."}, "TIKTOK_LAYER"),
        ({"TIKTOK_TABLE_PREFIX": "../../etc/"}, "TIKTOK_TABLE_PREFIX"),
    ],
)
def test_settings_refuse_paths_escaping_the_delta_root(env, setting):
    with pytest.raises(SettingsError, match=setting) as err:
        load_settings(env)
    assert "'..'" in str(err.value)  # says why


def test_settings_file_refuses_table_name_escaping_the_root(tmp_path):
    config = tmp_path / "sources.yaml"
    config.write_text(yaml.safe_dump({"sources": [{"name": "acme", "streams": {
        "videos": {"table_name": "../../../../tmp/pwned"}, "user_info": {"folder": "acme/../.."}}}]}))
    with pytest.raises(SettingsError) as err:
        load_settings({"TIKTOK_ORGANIC_CONFIG": str(config)})
    message = str(err.value)
    assert "source acme" in message and "streams.videos.table_name" in message
    assert "streams.user_info.folder" in message


@pytest.mark.parametrize(
    ("layer", "folder", "table", "prefix"),
    [("raw", "..", "videos", ""), ("..", "x", "videos", ""), ("raw", "x", "../videos", ""),
     ("raw", "x", "videos", "../"), ("raw", "/etc", "videos", ""), ("raw", "x", "a\\..\\b", ""),
     ("raw", "", "videos", ""), ("raw", "x", ".", "")],
)
def test_catalog_refuses_paths_escaping_the_delta_root(tmp_path, layer, folder, table, prefix):
    catalog = DeltaCatalog(root_uri=str(tmp_path / "lake"))
    with pytest.raises(CatalogConfigError, match="not a valid name"):
        catalog.table_uri(layer, folder, table, prefix)
    assert not (tmp_path / "lake").exists() and sorted(tmp_path.iterdir()) == []  # nothing created anywhere
