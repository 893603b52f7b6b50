"""Both Dagster jobs with the Delta root *and* the token store on S3 (moto_server), each run in a fresh working
directory and HOME with no DAGSTER_HOME, as in a container per run: the runs succeed, write nothing locally,
and the second refreshes with the token the first one rotated (the sandbox rotates strictly)."""

from __future__ import annotations

import json

import pytest

from tiktok_organic_dagster.names import DEFAULT_SOURCE_NAME, TOKEN_STORE_KEY_ENV, full_sync_job_name, sync_job_name
from tiktok_organic_dagster_tests.fixtures_s3 import S3Server
from tiktok_organic_dagster_tests.fresh_run import enter_fresh_run, files_under
from tiktok_organic_dagster_tests.helpers import run_job


def test_jobs_on_object_storage_keep_no_local_state(sandbox_factory, s3_server: S3Server, s3_root: str,
                                                    tmp_path, monkeypatch: pytest.MonkeyPatch):
    server = sandbox_factory(video_count=30)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv(TOKEN_STORE_KEY_ENV, raising=False)
    env = {"TIKTOK_API_BASE_URL": server.base_url, "TIKTOK_CLIENT_ID": server.client_id,
           "TIKTOK_CLIENT_SECRET": server.client_secret, "TIKTOK_REFRESH_TOKEN": server.initial_refresh_token,
           "TIKTOK_DELTA_ROOT": f"{s3_root}/lake", "TIKTOK_TOKEN_STORE": f"{s3_root}/tokens/"}
    prefix = s3_root.removeprefix(f"s3://{s3_server.bucket}/")

    def stored_refresh_token() -> str:
        body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=f"{prefix}/tokens/{DEFAULT_SOURCE_NAME}.json")
        return json.loads(body["Body"].read())["entry"]["refresh_token"]

    previous = None
    for run, job in enumerate((full_sync_job_name(DEFAULT_SOURCE_NAME), sync_job_name(DEFAULT_SOURCE_NAME))):
        workdir = enter_fresh_run(tmp_path, run, monkeypatch)
        if run:
            server.expire_access_tokens()  # the first run's access token is gone: this run must refresh
        assert run_job(job, env).success
        assert stored_refresh_token() == server.current_refresh_token() != previous
        previous = stored_refresh_token()
        assert files_under(workdir) == []  # nothing in the working directory or HOME
    assert server.request_counts()["oauth_token"] == 2
    keys = s3_server.list_keys(f"{prefix}/lake/")
    assert any("videos/_delta_log/" in k for k in keys) and any("user_info/_delta_log/" in k for k in keys)
