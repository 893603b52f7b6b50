"""`make demo-agency`: one TikTok app serving three accounts, synced in parallel, with no TikTok account.

Starts the bundled sandbox with three accounts of one app, writes the settings of a multi-account source
``agency``, onboards the accounts with the real ``tiktok-organic-accounts add`` (each token only in the
variable the command names), then runs the real Dagster CLI: the three accounts' full syncs as three
processes at once, the sandbox publishes and moves counters for one account, and the three regular syncs at
once. The runs share the app's (scaled-down) rate limit by pacing at a third of it each, so the sandbox's
single window per endpoint never answers 429. Everything lives under ``data/demo_agency/`` (its own
DAGSTER_HOME, token store and lake, wiped at start), apart from ``make demo``'s data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from tiktok_organic_dagster.cli.demo import prepare_dagster_home
from tiktok_organic_dagster.lake import DeltaCatalog
from tiktok_organic_dagster.names import (
    ACCOUNT_COLUMN,
    API_BASE_URL_ENV,
    COMMIT_PREFIX,
    CONFIG_ENV,
    DELTA_ROOT_ENV,
    TOKEN_STORE_ENV,
    full_sync_job_name,
    pool_name,
    sync_job_name,
)
from tiktok_organic_dagster.sandbox import SandboxConfig, SandboxServer
from tiktok_organic_dagster.sandbox.cli import account_env_name

SOURCE = "agency"
ACCOUNTS = 3
VIDEOS = 100  # per account
# The app's limit per endpoint, scaled down from TikTok's 600 a minute so that the three full syncs together
# send more video/list requests than one window admits: pacing at a third of it each keeps them from 429s.
RATE_LIMIT, RATE_WINDOW_SECONDS = 24, 4.0
CLIENT_ID_ENV, CLIENT_SECRET_ENV = "AGENCY_CLIENT_ID", "AGENCY_CLIENT_SECRET"
TABLES = ("user_info", "user_info_history", "videos", "videos_history")


class StepFailed(Exception):
    """A child process failed; the message carries the tail of its output."""


def demo_dir(cwd: Path) -> Path:
    return cwd / "data" / "demo_agency"


def write_settings(path: Path) -> None:
    """``accounts: []``: the source is partitioned by account and its accounts come from the onboarding CLI,
    so no token variable is named in the file. Every stored video's counters are refreshed by the regular
    sync too, so the summary can compare each account with the sandbox field by field."""
    settings = {"sources": [{
        "name": SOURCE,
        "description": "Three accounts of one TikTok app (make demo-agency)",
        "credentials": {"client_id_env": CLIENT_ID_ENV, "client_secret_env": CLIENT_SECRET_ENV},
        "accounts": [],
        "max_parallel_accounts": ACCOUNTS,
        "requests_per_minute": RATE_LIMIT,
        "rate_window_seconds": RATE_WINDOW_SECONDS,
        "streams": {"user_info": {}, "videos": {"sync_type": "INCREMENTAL", "refresh_all_counters": True}},
    }]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings, sort_keys=False))


def child_env(server: SandboxServer, base: Path) -> dict[str, str]:
    """Every inherited TIKTOK_* setting is dropped (a real token store or lake must never get the sandbox's
    tokens or fake tables); refresh tokens are not in here: only each ``add`` gets its own account's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOK_")}
    env.update({
        "DAGSTER_HOME": str(base / "dagster_home"),
        CONFIG_ENV: str(base / "settings.yaml"),
        API_BASE_URL_ENV: server.base_url,
        CLIENT_ID_ENV: server.client_id,
        CLIENT_SECRET_ENV: server.client_secret,
        TOKEN_STORE_ENV: str(base / "dagster_home" / "tiktok_token_store.json"),
        DELTA_ROOT_ENV: str(base / "lakehouse"),
    })
    return env


def run(args: Sequence[str], env: dict[str, str], cwd: Path, what: str) -> tuple[float, str]:
    """One child process to its end: (seconds, stdout); StepFailed with its output's tail otherwise."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", *args], env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StepFailed(f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
    return time.monotonic() - started, proc.stdout


def run_together(steps: list[tuple[list[str], dict[str, str], str]], cwd: Path) -> tuple[float, list[float], list[str]]:
    """Start every (args, env, what) child at once and wait for all: (wall seconds, each one's seconds, each
    one's stdout); the first failure is raised after all have ended, so none is left running."""
    started = time.monotonic()
    with ThreadPoolExecutor(len(steps)) as pool:
        futures = [pool.submit(run, args, env, cwd, what) for args, env, what in steps]
        failed = [e for f in futures if (e := f.exception()) is not None]
    wall = time.monotonic() - started
    if failed:
        raise failed[0]
    results = [f.result() for f in futures]
    return wall, [secs for secs, _ in results], [out for _, out in results]


def onboard(server: SandboxServer, env: dict[str, str], cwd: Path) -> list[str]:
    """``tiktok-organic-accounts add`` per account (all at once: the token store and the instance take
    concurrent writers), each token only in the variable ``--refresh-token-env`` names, never in argv."""
    steps = []
    for account in server.account_names:
        var = account_env_name(account)  # ACCOUNT_1_REFRESH_TOKEN, as the sandbox CLI names it
        args = ["tiktok_organic_dagster.cli.accounts", "add", "--source", SOURCE, "--account", account,
                "--refresh-token-env", var]
        steps.append((args, {**env, var: server.current_refresh_token(account) or ""}, f"add {account}"))
    return [out.strip() for out in run_together(steps, cwd)[2]]


def sync_round(job: str, accounts: list[str], env: dict[str, str], cwd: Path) -> tuple[float, list[float]]:
    """One ``dagster job execute`` per account, all started together, as a deployment's run queue would."""
    steps = [(["dagster", "job", "execute", "-m", "tiktok_organic_dagster", "-j", job,
               "--tags", json.dumps({"dagster/partition": a})], env, f"{job} of account {a}") for a in accounts]
    wall, each, _ = run_together(steps, cwd)
    return wall, each


def round_line(name: str, wall: float, each: list[float], server: SandboxServer) -> str:
    """What one parallel round took and what the sandbox answered during it."""
    counts = " ".join(f"{k}={v}" for k, v in sorted(server.request_counts().items()) if v)
    return (f"{name}: {len(each)} runs at once, {wall:.1f}s wall (each run {', '.join(f'{s:.1f}' for s in each)}"
            f"s); sandbox requests {counts}; 429 answers: {server.status_counts().get(429, 0)}")


def summarize(server: SandboxServer, base: Path, cwd: Path) -> list[str]:
    """Rows per account in each table, next to the sandbox's own count of that account's videos."""
    catalog = DeltaCatalog(root_uri=str(base / "lakehouse"), metadata_prefix=COMMIT_PREFIX)
    uris = {t: catalog.table_uri("raw", "tiktok_organic", t) for t in TABLES}
    lines = [f"rows per account in {os.path.relpath(base, cwd)}/lakehouse/raw/tiktok_organic/<table>:",
             f"{'account':<12}" + "".join(f"{t:>19}" for t in TABLES) + f"{'sandbox videos':>16}  match",
             "-" * 104]
    for account in server.account_names:
        rows = {t: catalog.row_count(u, partition=(ACCOUNT_COLUMN, account)) for t, u in uris.items()}
        truth = len(server.videos(account))
        ok = "yes" if rows["videos"] == truth and rows["user_info"] == 1 else "NO"
        lines.append(f"{account:<12}" + "".join(f"{rows[t]:>19}" for t in TABLES) + f"{truth:>16}  {ok}")
    return lines


def demo(cwd: Path) -> SandboxServer:
    """The whole demo in ``cwd``; returns the (stopped) sandbox, whose accounts' data stay readable."""
    base = demo_dir(cwd)
    shutil.rmtree(base, ignore_errors=True)  # the demo's own folder: every run starts from an empty lake
    prepare_dagster_home(base / "dagster_home")
    write_settings(base / "settings.yaml")
    config = SandboxConfig(accounts=ACCOUNTS, video_count=VIDEOS, rate_limit=RATE_LIMIT,
                           rate_window_seconds=RATE_WINDOW_SECONDS)
    with SandboxServer(config) as server:
        accounts = server.account_names
        env = child_env(server, base)
        print(f"sandbox TikTok API on {server.base_url}: one app, {VIDEOS} videos each for {', '.join(accounts)}")
        print(f"app limit {RATE_LIMIT} requests per {RATE_WINDOW_SECONDS:g}s per endpoint, for all accounts "
              f"together: each run paces at {RATE_LIMIT // ACCOUNTS} per {RATE_WINDOW_SECONDS:g}s")
        print(f"settings of source '{SOURCE}': {os.path.relpath(base / 'settings.yaml', cwd)}")
        run(["dagster", "instance", "concurrency", "set", pool_name(SOURCE), str(ACCOUNTS)], env, cwd,
            "dagster instance concurrency set")
        print(f"pool {pool_name(SOURCE)}: limit {ACCOUNTS} (max_parallel_accounts)")
        print("tiktok-organic-accounts add, tokens through --refresh-token-env:")
        print("\n".join(f"  {line}" for line in onboard(server, env, cwd)))

        server.reset_counts()
        wall, each = sync_round(full_sync_job_name(SOURCE), accounts, env, cwd)
        print(round_line(f"full sync {full_sync_job_name(SOURCE)}", wall, each, server))
        new = server.add_videos(5, account=accounts[0])
        moved = server.bump_counters(fraction=0.1, account=accounts[0])
        print(f"sandbox: {accounts[0]} published {len(new)} videos; counters of {len(moved)} of its videos moved")
        server.reset_counts()
        wall, each = sync_round(sync_job_name(SOURCE), accounts, env, cwd)
        print(round_line(f"regular sync {sync_job_name(SOURCE)}", wall, each, server))

        print()
        print("\n".join(summarize(server, base, cwd)))
        _, listing = run(["tiktok_organic_dagster.cli.accounts", "list", "--source", SOURCE], env, cwd,
                         "tiktok-organic-accounts list")
        print(f"\n$ tiktok-organic-accounts list --source {SOURCE}\n{listing.rstrip()}")
        print(f"\nDagster instance, token store and lake under {os.path.relpath(base, cwd)}/")
    return server


def main() -> int:
    try:
        demo(Path.cwd())
    except StepFailed as exc:
        print(f"{exc}\ndemo-agency: a step failed (output above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
