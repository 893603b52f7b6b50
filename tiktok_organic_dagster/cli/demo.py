"""`make demo`: the whole product end to end on embedded defaults, with no TikTok account.

Starts the bundled sandbox API, runs the real Dagster CLI (`dagster job execute`) for a full sync, lets the
sandbox publish new videos and move counters, runs the regular (incremental) sync, and prints what landed in
the local Delta folder. Credentials reach the jobs only as environment variables of the child processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tiktok_organic_dagster.lake import DeltaCatalog
from tiktok_organic_dagster.names import COMMIT_PREFIX, full_sync_job_name, sync_job_name
from tiktok_organic_dagster.sandbox import SandboxConfig, SandboxServer
from tiktok_organic_dagster.settings import load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def prepare_dagster_home(path: Path) -> Path:
    """A persistent instance so runs, metadata and the token store survive between commands."""
    path.mkdir(parents=True, exist_ok=True)
    src = PROJECT_ROOT / "dagster.yaml"
    if src.exists():
        shutil.copy(src, path / "dagster.yaml")
    return path


def sandbox_env(server: SandboxServer, dagster_home: Path) -> dict[str, str]:
    """Child env for the sandbox. Every inherited TIKTOK_* setting is dropped: a real TIKTOK_TOKEN_STORE or
    TIKTOK_DELTA_ROOT would otherwise get the sandbox's tokens and fake tables written over the real ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOK_")}
    env.update(
        {
            "DAGSTER_HOME": str(dagster_home),
            "TIKTOK_API_BASE_URL": server.base_url,
            "TIKTOK_CLIENT_ID": server.client_id,
            "TIKTOK_CLIENT_SECRET": server.client_secret,
            "TIKTOK_REFRESH_TOKEN": server.initial_refresh_token,
            "TIKTOK_TOKEN_STORE": str(dagster_home / "tiktok_token_store.json"),
            "TIKTOK_DELTA_ROOT": str(Path.cwd() / "data" / "lakehouse"),
        }
    )
    return env


def run_job(job: str, env: dict[str, str], cwd: Path) -> float:
    started = time.monotonic()
    cmd = [sys.executable, "-m", "dagster", "job", "execute", "-m", "tiktok_organic_dagster", "-j", job]
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"demo: job {job} failed (exit {proc.returncode})")
    return time.monotonic() - started


def source_name() -> str:
    return load_settings({}).sources[0].name


def summarize(cwd: Path) -> list[str]:
    source = load_settings({}).sources[0]
    catalog = DeltaCatalog(root_uri=str(cwd / "data" / "lakehouse"), metadata_prefix=COMMIT_PREFIX)
    lines = [f"{'table':<52} {'rows':>6} {'version':>8}  last commit", "-" * 90]
    for stream, cfg in source.streams.items():
        for suffix in ("", "_history"):
            uri = catalog.table_uri(cfg.layer, cfg.folder, source.table_name(stream) + suffix)
            hist = catalog.history(uri, limit=1)[0]
            op = f"{hist.get('operation')} ({hist.get('sync_type') or 'maintenance'})"
            rel = os.path.relpath(uri, cwd) if "://" not in uri else uri
            lines.append(f"{rel:<52} {catalog.row_count(uri):>6} {catalog.version(uri):>8}  {op}")
    return lines


def main() -> None:
    cwd = Path.cwd()
    home = prepare_dagster_home(cwd / ".dagster_home")
    with SandboxServer(SandboxConfig(video_count=300)) as server:
        env = sandbox_env(server, home)
        print(f"sandbox TikTok API on {server.base_url} with {len(server.videos())} videos")
        name = source_name()
        secs = run_job(full_sync_job_name(name), env, cwd)
        print(f"full sync ({full_sync_job_name(name)}) done in {secs:.1f}s")
        new = server.add_videos(20)
        moved = server.bump_counters(fraction=0.05)
        print(f"sandbox published {len(new)} new videos and moved counters of {len(moved)} videos")
        secs = run_job(sync_job_name(name), env, cwd)
        print(f"incremental sync ({sync_job_name(name)}) done in {secs:.1f}s")
        print()
        print("\n".join(summarize(cwd)))
        print(f"\nDelta tables under {cwd / 'data' / 'lakehouse'}; Dagster instance in {home}")
        print("Explore them in the UI with `make dev`.")


if __name__ == "__main__":
    main()
