"""`make demo-agency` keeps working: three sandbox accounts onboarded, synced in parallel by real `dagster job
execute` processes, each account's rows equal to the sandbox's, and no token printed.

The demo's `tiktok-organic-accounts add` and `list` steps run in this process here (the same ``main`` with
the arguments and environment the demo gives the child, the three adds one after the other): the tool's own
process is tested in test_accounts, and each would cost a Python start-up importing Dagster. The Dagster CLI
steps (`dagster instance concurrency set`, the six `dagster job execute` runs) stay real processes.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tiktok_organic_dagster.cli import accounts as accounts_cli
from tiktok_organic_dagster.cli import demo_agency
from tiktok_organic_dagster.sandbox import SandboxServer
from tiktok_organic_dagster_tests.accounts_helpers import assert_account_matches_truth

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS_MODULE = "tiktok_organic_dagster.cli.accounts"
real_run, real_run_together = demo_agency.run, demo_agency.run_together


def run_here(args: Sequence[str], env: dict[str, str], cwd: Path, what: str) -> tuple[float, str]:
    """``demo_agency.run``, with the accounts tool's ``main`` called in this process under the child's
    environment and folder, failing as the child would (StepFailed with its output); other steps as processes."""
    if args[0] != ACCOUNTS_MODULE:
        return real_run(args, env, cwd, what)
    started = time.monotonic()
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:  # exactly the child's environment, restored after
        for name in set(os.environ) - set(env):
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        mp.chdir(cwd)
        mp.setattr("sys.stderr", err)
        code = accounts_cli.main(list(args[1:]), stdout=out)
    if code != 0:
        raise demo_agency.StepFailed(f"{what} failed (exit {code}):\n{out.getvalue()}{err.getvalue()}")
    return time.monotonic() - started, out.getvalue()


def run_together_here(steps: list[tuple[list[str], dict[str, str], str]],
                      cwd: Path) -> tuple[float, list[float], list[str]]:
    """``demo_agency.run_together``; the accounts tool's steps (the onboarding) one after the other in this
    thread, since threads must not each patch os.environ. The Dagster runs still start together."""
    if any(args[0] != ACCOUNTS_MODULE for args, _, _ in steps):
        return real_run_together(steps, cwd)
    started = time.monotonic()
    results = [run_here(args, env, cwd, what) for args, env, what in steps]
    return time.monotonic() - started, [secs for secs, _ in results], [out for _, out in results]


def test_demo_agency_syncs_three_accounts_in_parallel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    for name in [k for k in os.environ if k.startswith(("TIKTOK_", "DAGSTER_"))]:
        monkeypatch.delenv(name)
    # an operator's real settings in the shell must not receive the sandbox's tokens or fake tables
    real = tmp_path / "real"
    monkeypatch.setenv("TIKTOK_TOKEN_STORE", str(real / "tokens.json"))
    monkeypatch.setenv("TIKTOK_DELTA_ROOT", str(real / "lake"))
    monkeypatch.setenv("TIKTOK_ORGANIC_CONFIG", str(real / "settings.yaml"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the children import the project from the temp folder too
    monkeypatch.chdir(tmp_path)
    servers: list[SandboxServer] = []

    class Recorded(SandboxServer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            servers.append(self)

    monkeypatch.setattr(demo_agency, "SandboxServer", Recorded)
    monkeypatch.setattr(demo_agency, "run", run_here)
    monkeypatch.setattr(demo_agency, "run_together", run_together_here)

    code = demo_agency.main()
    out, err = capfd.readouterr()
    assert code == 0, out[-3000:] + err[-3000:]
    (server,) = servers
    accounts = server.account_names
    assert accounts == ["account_1", "account_2", "account_3"]

    lake = tmp_path / "data" / "demo_agency" / "lakehouse"
    for account in accounts:
        assert_account_matches_truth({"TIKTOK_DELTA_ROOT": str(lake)}, server, account)
    assert len(server.videos("account_1")) == demo_agency.VIDEOS + 5  # published between the two rounds

    rounds = [line for line in out.splitlines() if "runs at once" in line]
    assert len(rounds) == 2 and all(line.endswith("429 answers: 0") for line in rounds), rounds
    table, listing = out.split("$ tiktok-organic-accounts list --source agency", 1)
    summary = {line.split()[0]: line.split() for line in table.splitlines() if line.startswith("account_")}
    for account in accounts:
        assert summary[account][-1] == "yes"  # the summary's own comparison with the sandbox
        assert re.search(rf"^{account}\s+yes\s+no\s+365\s+\d{{4}}-", listing, re.M), listing

    secrets = [*server.issued_tokens(), *server.initial_refresh_tokens.values(), server.client_secret]
    assert not [s for s in secrets if s in out or s in err]
    assert not real.exists() and not (tmp_path / "data" / "lakehouse").exists()
    assert not (tmp_path / ".dagster_home").exists()  # make demo's instance stays untouched
