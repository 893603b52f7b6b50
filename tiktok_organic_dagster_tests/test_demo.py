"""`make demo` keeps working: the demo module runs the real CLI twice and prints the tables it wrote."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_full_then_incremental(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKTOK_", "DAGSTER_"))}
    env["PYTHONPATH"] = str(ROOT)  # importable from the temp folder even without an editable install
    # an operator's real settings in the shell must not receive the sandbox's tokens or fake tables
    real_store, real_lake = tmp_path / "real" / "tokens.json", tmp_path / "real" / "lake"
    env.update({"TIKTOK_TOKEN_STORE": str(real_store), "TIKTOK_DELTA_ROOT": str(real_lake),
                "TIKTOK_TABLE_PREFIX": "real_"})
    proc = subprocess.run([sys.executable, "-m", "tiktok_organic_dagster.cli.demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "full sync (tiktok_organic_full_sync) done" in out
    assert "incremental sync (tiktok_organic_sync) done" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("data/lakehouse")}
    videos = lines["data/lakehouse/raw/tiktok_organic/videos"]
    assert videos[1] == "320" and "(incremental)" in videos[-1]  # 300 + 20 published between the runs
    assert lines["data/lakehouse/raw/tiktok_organic/user_info"][1] == "1"
    assert (tmp_path / ".dagster_home" / "tiktok_token_store.json").stat().st_mode & 0o777 == 0o600
    assert not real_store.exists() and not real_lake.exists()
