"""`make demo-agency` keeps working: three sandbox accounts onboarded with the real CLI, synced in parallel by
real `dagster job execute` processes, each account's rows equal to the sandbox's, and no token printed."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tiktok_organic_dagster.cli import demo_agency
from tiktok_organic_dagster.sandbox import SandboxServer
from tiktok_organic_dagster_tests.accounts_helpers import assert_account_matches_truth

ROOT = Path(__file__).resolve().parent.parent


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
