"""End to end through the UI's own API: a real dagster-webserver launches the sync and reports metadata."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from dagster_graphql import DagsterGraphQLClient

from tiktok_organic_dagster.names import SYNC_JOB
from tiktok_organic_dagster_tests.helpers import sandbox_env

ROOT = Path(__file__).resolve().parent.parent

METADATA_QUERY = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        metadataEntries {
          label
          __typename
          ... on IntMetadataEntry { intValue }
          ... on TextMetadataEntry { text }
          ... on PathMetadataEntry { path }
        }
      }
    }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def webserver(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=80)
    home = tmp_path / "dagster_home"
    home.mkdir()
    # No daemon in this test: the default coordinator launches runs straight from the webserver.
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOK_")}
    env.update(sandbox_env(server, tmp_path))
    env["DAGSTER_HOME"] = str(home)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-m", "tiktok_organic_dagster.defs.definitions",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("dagster-webserver did not start within 90 s")
    yield server, port, tmp_path
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_launch_sync_through_graphql_and_read_metadata(webserver):
    server, port, tmp_path = webserver
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution(SYNC_JOB)
    deadline = time.monotonic() + 120
    status = None
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS"

    response = requests.post(
        f"http://127.0.0.1:{port}/graphql",
        json={"query": METADATA_QUERY, "variables": {"path": ["raw", "tiktok_organic", "videos"]}},
        timeout=30,
    ).json()
    [mat] = response["data"]["assetOrError"]["assetMaterializations"]
    assert mat["runId"] == run_id
    meta = {e["label"]: e for e in mat["metadataEntries"]}
    assert meta["dagster/row_count"]["intValue"] == len(server.videos())
    assert meta["rows_inserted"]["intValue"] == len(server.videos())
    assert meta["sync_type"]["text"] == "FULL_TABLE"  # first run: no table yet, so a full sync
    # every video/list request the sandbox answered, at least one per 20 videos (time slices may add a few)
    assert meta["api_pages"]["intValue"] == server.request_counts()["video_list"] >= -(-len(server.videos()) // 20)
    assert meta["dagster/uri"]["path"].startswith(str(tmp_path / "lake"))
    assert "refresh_token_days_left" in meta
