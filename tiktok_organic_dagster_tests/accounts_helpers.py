"""A multi-account source against the multi-account sandbox: settings, environment, runs, ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.compute as pc
import yaml

from tiktok_organic_dagster.defs.definitions import build_definitions
from tiktok_organic_dagster.lake import DeltaCatalog
from tiktok_organic_dagster.names import ACCOUNT_COLUMN, COMMIT_PREFIX, full_sync_job_name, sync_job_name
from tiktok_organic_dagster.sandbox import SandboxServer
from tiktok_organic_dagster.settings import load_settings
from tiktok_organic_dagster.tiktok.streams import USER_FIELDS
from tiktok_organic_dagster_tests.helpers import expected_video, patched_env

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "agency"
SYNC, FULL = sync_job_name(SOURCE), full_sync_job_name(SOURCE)
TABLES = ("user_info", "user_info_history", "videos", "videos_history")


def token_env(account: str) -> str:
    return f"{account.upper()}_REFRESH_TOKEN"


def agency_env(server: SandboxServer, tmp_path: Path, *, listed: tuple[str, ...] = (), parallel: int = 3,
               requests_per_minute: int = 600, paging_parallelism: int = 4, **source: Any) -> dict[str, str]:
    """Settings file (``listed`` accounts named in it, with their token variables), a DAGSTER_HOME with the
    project's dagster.yaml, a lake and a token store, all under ``tmp_path``."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    settings = {"sources": [{
        "name": SOURCE,
        "credentials": {"client_id_env": "AGENCY_CLIENT_ID", "client_secret_env": "AGENCY_CLIENT_SECRET"},
        "accounts": [{"name": a, "refresh_token_env": token_env(a)} for a in listed],
        "max_parallel_accounts": parallel,
        "requests_per_minute": requests_per_minute,
        # every known video's counters refreshed by incremental runs too, so each run can be compared with the
        # sandbox field by field
        "streams": {"user_info": {}, "videos": {"sync_type": "INCREMENTAL", "refresh_all_counters": True,
                                                "paging_parallelism": paging_parallelism}},
        **source,
    }]}
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    env = {
        "TIKTOK_ORGANIC_CONFIG": str(path),
        "TIKTOK_API_BASE_URL": server.base_url,
        "AGENCY_CLIENT_ID": server.client_id,
        "AGENCY_CLIENT_SECRET": server.client_secret,
        "TIKTOK_DELTA_ROOT": str(tmp_path / "lake"),
        "TIKTOK_TOKEN_STORE": str(tmp_path / "tokens.json"),
        "DAGSTER_HOME": str(home),
    }
    for account in listed:
        env[token_env(account)] = server.current_refresh_token(account) or ""
    return env


@contextmanager
def instance_of(env: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    """The instance of the env's DAGSTER_HOME, not entered as a context manager: entering one sets Dagster's
    current defs-state storage, and a nested entry (execute_in_process, sensor contexts) would leave it set to
    this instance after it is gone, breaking every later test of the process that loads definitions."""
    with patched_env(env):
        instance = dg.DagsterInstance.get()
    try:
        yield instance
    finally:
        instance.dispose()


def run_account(env: dict[str, str], account: str, job: str = SYNC, raise_on_error: bool = True,
                run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """One account's run in this process, on the instance of DAGSTER_HOME (where its partition lives)."""
    with patched_env(env):
        defs = build_definitions(load_settings())
        with instance_of(env) as instance:
            return defs.resolve_job_def(job).execute_in_process(
                instance=instance, partition_key=account, raise_on_error=raise_on_error, run_config=run_config)


def dagster_cli(env: dict[str, str], *args: str) -> subprocess.Popen:
    """``dagster <args>`` as its own process (not waited for), in the test's folder (the lake's parent)."""
    return subprocess.Popen([sys.executable, "-m", "dagster", *args], cwd=str(Path(env["TIKTOK_DELTA_ROOT"]).parent),
                            env={**_base_env(), **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("TIKTOK_")}


def accounts_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiktok_organic_dagster.cli.accounts", *args], env={**_base_env(),
                          **env}, capture_output=True, text=True, timeout=120)


def catalog(env: dict[str, str]) -> DeltaCatalog:
    return DeltaCatalog(root_uri=env["TIKTOK_DELTA_ROOT"], metadata_prefix=COMMIT_PREFIX)


def table_uri(env: dict[str, str], table: str) -> str:
    return catalog(env).table_uri("raw", "tiktok_organic", table)


def rows_of(env: dict[str, str], table: str, account: str) -> list[dict]:
    cat = catalog(env)
    data = cat.read(table_uri(env, table))
    return data.filter(pc.equal(data.column(ACCOUNT_COLUMN), account)).to_pylist()


def assert_account_matches_truth(env: dict[str, str], server: SandboxServer, account: str) -> None:
    """Every field of the account's videos and profile as the sandbox holds them, and nothing else."""
    videos = {r["id"]: r for r in rows_of(env, "videos", account)}
    truth = {v["id"]: expected_video(v) for v in server.videos(account)}
    assert set(videos) == set(truth), f"{account}: ids differ"
    for vid, want in truth.items():
        got = {k: videos[vid].get(k) for k in want}
        assert got == want, f"{account}: video {vid} differs"
    users = rows_of(env, "user_info", account)
    assert len(users) == 1
    user = server.user(account)
    assert {k: users[0].get(k) for k in USER_FIELDS if k in user} == {k: user[k] for k in USER_FIELDS if k in user}
    assert {r["open_id"] for r in rows_of(env, "videos", account)} == {user["open_id"]}
    assert {r["open_id"] for r in rows_of(env, "videos_history", account)} == {user["open_id"]}
    assert {r["open_id"] for r in rows_of(env, "user_info_history", account)} == {user["open_id"]}


def sandbox_429s(server: SandboxServer) -> int:
    return int(server.status_counts().get(429, 0))


def run_log(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def tags(account: str) -> str:
    return json.dumps({"dagster/partition": account})


def onboard(server: SandboxServer, env: dict[str, str], accounts: list[str] | tuple[str, ...]) -> None:
    """``tiktok-organic-accounts add`` for each account (in this process: the tool's own process is tested
    elsewhere), its token in the variable the command names."""
    import io

    from tiktok_organic_dagster.cli.accounts import main

    for account in accounts:
        var = token_env(account)
        out = io.StringIO()
        with patched_env({**env, var: server.current_refresh_token(account) or ""}):
            code = main(["add", "--source", SOURCE, "--account", account, "--refresh-token-env", var], stdout=out)
        assert code == 0, out.getvalue()
        assert f"account '{account}'" in out.getvalue()


def plain_run(env: dict[str, str], account: str, full: bool = False, *, patch: bool = True) -> dict[str, int]:
    """One account's sync through the plain layers with the client the source's resource builds for that
    account (its token store entry, its share of the app's limit, paced): what a run does minus Dagster's
    start-up, so tests can afford many. Returns the client's request counts. ``patch=False``: the caller has
    set ``env`` in ``os.environ`` already (threads must not patch it each: their restores would interleave)."""
    from tiktok_organic_dagster.defs.definitions import build_resources
    from tiktok_organic_dagster.defs.resources import DeltaCatalogResource, TikTokClientResource
    from tiktok_organic_dagster.names import catalog_resource_key, client_resource_key
    from tiktok_organic_dagster.sync import sync_user_info, sync_videos

    with patched_env(env) if patch else nullcontext():
        source = load_settings().sources[0]
        resources = build_resources(source)
        client_resource = resources[client_resource_key(SOURCE)]
        catalog_resource = resources[catalog_resource_key(SOURCE)]
        assert isinstance(client_resource, TikTokClientResource)
        assert isinstance(catalog_resource, DeltaCatalogResource)
        client = client_resource.model_copy(update={"account": account}).build_client()
        lake = catalog_resource.get_catalog()
        try:
            for sync in (sync_user_info, sync_videos):
                extra = {"refresh_all_counters": False} if sync is sync_videos else {}
                sync(client, lake, source, full_refresh=full, run_id="plain", label=account,  # type: ignore[operator]
                     account=account, **extra)
            return dict(client.stats.requests)
        finally:
            client.close()
