"""Helpers for end-to-end tests: run the real jobs against a sandbox and compare Delta with ground truth."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from tiktok_organic_dagster.defs.definitions import build_definitions
from tiktok_organic_dagster.lake import DeltaCatalog
from tiktok_organic_dagster.names import COMMIT_PREFIX
from tiktok_organic_dagster.sandbox import SandboxServer
from tiktok_organic_dagster.settings import load_settings
from tiktok_organic_dagster.tiktok.streams import VIDEO_FIELDS


def sandbox_env(server: SandboxServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "TIKTOK_API_BASE_URL": server.base_url,
        "TIKTOK_CLIENT_ID": server.client_id,
        "TIKTOK_CLIENT_SECRET": server.client_secret,
        "TIKTOK_REFRESH_TOKEN": server.initial_refresh_token,
        "TIKTOK_DELTA_ROOT": str(tmp_path / "lake"),
        "TIKTOK_TOKEN_STORE": str(tmp_path / "tokens.json"),
        **extra,
    }


@contextmanager
def patched_env(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_job(job_name: str, env: dict[str, str], instance: dg.DagsterInstance | None = None,
            run_config: dict | None = None, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """Build the definitions under `env` exactly as the code location would, then execute the job."""
    with patched_env(env):
        defs = build_definitions(load_settings())
        job = defs.resolve_job_def(job_name)
        return job.execute_in_process(
            instance=instance or dg.DagsterInstance.ephemeral(),
            run_config=run_config,
            raise_on_error=raise_on_error,
            resources=None,
        )


def catalog_for(env: dict[str, str]) -> DeltaCatalog:
    return DeltaCatalog(root_uri=env["TIKTOK_DELTA_ROOT"], metadata_prefix=COMMIT_PREFIX)


def read_rows(env: dict[str, str], table: str, layer: str = "raw", folder: str = "tiktok_organic") -> list[dict]:
    catalog = catalog_for(env)
    return catalog.read(catalog.table_uri(layer, folder, table)).to_pylist()


def expected_video(truth: dict) -> dict:
    """Ground-truth video as the table should hold it (create_time as UTC timestamp, ids as strings)."""
    from datetime import datetime, timezone

    out = {k: truth.get(k) for k in VIDEO_FIELDS}
    out["create_time"] = datetime.fromtimestamp(truth["create_time"], timezone.utc)
    return out


def expire_access_tokens(path: str | Path) -> None:
    """What a day does to a token store (TikTok access tokens live 24 h): every stored access token expires,
    the refresh tokens stay, so the next run refreshes before its first data request."""
    from dataclasses import replace

    from tiktok_organic_dagster.tiktok.token_store import TokenStore

    store = TokenStore(Path(path))
    with store.locked():
        for key, entry in store.read_all().items():
            store.put(key, replace(entry, access_refresh_after=0.0, access_expires_at=0.0))
