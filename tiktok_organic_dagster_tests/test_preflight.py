"""Pre-flight at run start: what would fail a run is found before its first API request, and said in one
short message that names the setting and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tiktok_organic_dagster.names import SYNC_JOB
from tiktok_organic_dagster_tests.fixtures_s3 import S3Server
from tiktok_organic_dagster_tests.helpers import run_job, sandbox_env

ROOT = Path(__file__).resolve().parents[1]


def _errors(result) -> str:
    """Every error message of the run (resource set-up failures included), causes unwrapped."""
    parts: list[str] = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            parts.append(error.message)
            error = error.cause
    return "\n".join(parts)


def _fails_before_any_request(server, env: dict[str, str]) -> str:
    result = run_job(SYNC_JOB, env, raise_on_error=False)
    assert not result.success
    assert sum(server.request_counts().values()) == 0, server.request_counts()  # nothing reached the API
    failures = [e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"]
    assert len(failures) == 1  # the run stopped at set-up, before any step ran
    return _errors(result)


def test_missing_client_secret_is_named_before_any_request(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=20)
    text = _fails_before_any_request(server, sandbox_env(server, tmp_path, TIKTOK_CLIENT_SECRET=""))
    assert "TikTok source 'tiktok_organic': TIKTOK_CLIENT_SECRET not set where this run executes" in text
    assert server.client_secret not in text


def test_unwritable_local_delta_root_names_the_variable(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=20)
    (tmp_path / "a-file").write_text("not a folder")
    env = sandbox_env(server, tmp_path, TIKTOK_DELTA_ROOT=str(tmp_path / "a-file" / "lake"))
    text = _fails_before_any_request(server, env)
    assert f"The Delta root {tmp_path / 'a-file' / 'lake'} cannot be written: Not a directory (set by " \
           "TIKTOK_DELTA_ROOT). Point TIKTOK_DELTA_ROOT at a folder or bucket prefix this run can write" in text


def test_unreachable_bucket_fails_before_any_request(sandbox_factory, tmp_path, s3_server: S3Server):
    server = sandbox_factory(video_count=20)
    env = sandbox_env(server, tmp_path, TIKTOK_DELTA_ROOT="s3://no-such-bucket-here/lake", **s3_server.env())
    text = _fails_before_any_request(server, env)
    assert "The Delta root s3://no-such-bucket-here/lake cannot be written" in text
    assert "(set by TIKTOK_DELTA_ROOT). Point TIKTOK_DELTA_ROOT at" in text


def test_first_run_without_any_token_says_once_to_authorize(sandbox_factory, tmp_path):
    server = sandbox_factory(video_count=20)
    text = _fails_before_any_request(server, sandbox_env(server, tmp_path, TIKTOK_REFRESH_TOKEN=""))
    # one message for the run (set-up), not one per stream
    assert "is not authorized yet" in text and "stream 'videos'" not in text
    assert "Authorize the app once: run `tiktok-organic-authorize --key tiktok_organic" in text


def test_validate_warns_about_unset_credentials_but_passes():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOK_")}
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m",
                           "tiktok_organic_dagster"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "TikTok source 'tiktok_organic': TIKTOK_CLIENT_ID and TIKTOK_CLIENT_SECRET not set here" in out
