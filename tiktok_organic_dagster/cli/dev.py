"""`make dev`: the Dagster UI on real credentials, or on the sandbox API when none are set.

With TIKTOK_CLIENT_ID unset (and no settings file), a sandbox is started in this process and its
credentials are handed to `dagster dev` as environment variables of the child process only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tiktok_organic_dagster.cli.demo import PROJECT_ROOT, prepare_dagster_home, sandbox_env
from tiktok_organic_dagster.sandbox import SandboxConfig, SandboxServer


def main() -> None:
    cwd = Path.cwd()
    home = prepare_dagster_home(cwd / ".dagster_home")
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), *sys.argv[1:]]
    if os.environ.get("TIKTOK_CLIENT_ID") or os.environ.get("TIKTOK_ORGANIC_CONFIG"):
        env = {**os.environ, "DAGSTER_HOME": os.environ.get("DAGSTER_HOME", str(home))}
        raise SystemExit(subprocess.call(cmd, env=env))
    with SandboxServer(SandboxConfig(video_count=300)) as server:
        print(f"No TIKTOK_CLIENT_ID set: using the sandbox TikTok API on {server.base_url}")
        try:
            raise SystemExit(subprocess.call(cmd, env=sandbox_env(server, home)))
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
