"""Runs of a multi-account source as separate processes, as a deployment starts them: the Dagster CLI for
one account, several accounts at once against the app-wide limit, and short runs back to back in slots."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tiktok_organic_dagster_tests.accounts_helpers import (
    FULL,
    SYNC,
    agency_env,
    assert_account_matches_truth,
    dagster_cli,
    onboard,
    plain_run,
    rows_of,
    run_log,
    sandbox_429s,
    tags,
)
from tiktok_organic_dagster_tests.helpers import patched_env


def test_four_accounts_in_parallel_processes_stay_under_the_app_limit(sandbox_factory, tmp_path: Path):
    """Each run paces itself at a quarter of the app's limit; together they never trip the sandbox's one
    window per endpoint for the whole app. Both ways of running one account from the Dagster CLI take part."""
    accounts = [f"account_{i}" for i in range(1, 5)]
    server = sandbox_factory(accounts=5, video_count=40, rate_limit=16, rate_window_seconds=3.0)
    env = agency_env(server, tmp_path, parallel=4, requests_per_minute=16, rate_window_seconds=3.0)
    onboard(server, env, accounts)
    procs = [dagster_cli(env, "job", "execute", "-m", "tiktok_organic_dagster", "-j", FULL, "--tags", tags(a))
             for a in accounts[:2]]
    procs += [dagster_cli(env, "asset", "materialize", "-m", "tiktok_organic_dagster", "--select", "*",
                          "--partition", a) for a in accounts[2:]]
    for proc in procs:
        code, log = run_log(proc)
        assert code == 0, log[-12000:]
    for account in accounts:
        assert_account_matches_truth(env, server, account)
    assert sandbox_429s(server) == 0
    # the test could fail: together the runs sent more than the window admits, so pacing is what held them
    assert server.request_counts()["video_list"] > 16

    # the full-sync job with only a partition tag is a full sync (a deleted video leaves the table) ...
    victim = server.videos("account_1")[0]["id"]
    server.delete_video(victim, account="account_1")
    full = dagster_cli(env, "job", "execute", "-m", "tiktok_organic_dagster", "-j", FULL, "--tags",
                       tags("account_1"))
    # ... and a run of an account that is not registered fails before any request of its own
    unknown = dagster_cli(env, "job", "execute", "-m", "tiktok_organic_dagster", "-j", SYNC, "--tags",
                          tags("account_5"))
    code, log = run_log(full)
    assert code == 0, log[-12000:]
    assert victim not in {r["id"] for r in rows_of(env, "videos", "account_1")}
    assert_account_matches_truth(env, server, "account_1")
    code, log = run_log(unknown)
    assert code != 0
    assert "TikTok account 'account_5' is not registered in source 'agency'" in log
    assert "tiktok-organic-accounts add --source agency --account account_5" in log
    assert sum(server.request_counts_by_account().get("account_5", {}).values()) == 0
    assert rows_of(env, "videos", "account_5") == []
    assert sandbox_429s(server) == 0


def test_twelve_short_runs_back_to_back_through_three_slots_never_trip_the_limit(sandbox_factory, tmp_path: Path):
    """A slot's next run starts right after the last one finished; its first request still waits one
    interval, so no window holds more than the slot's share of its requests. (Each run builds its own
    client as a new run process would; the slots are threads here, the pool's job in a deployment.)"""
    accounts = [f"account_{i}" for i in range(1, 13)]
    # three pages a run: unpaced, three slots' bursts (9 requests) would overrun the window's 6
    server = sandbox_factory(accounts=12, video_count=60, rate_limit=6, rate_window_seconds=2.0)
    env = agency_env(server, tmp_path, parallel=3, requests_per_minute=6, paging_parallelism=1,
                     rate_window_seconds=2.0)
    onboard(server, env, accounts)
    server.reset_counts()

    def slot(mine: list[str]) -> list[dict[str, int]]:
        return [plain_run(env, account, full=True, patch=False) for account in mine]  # back to back

    with patched_env(env), ThreadPoolExecutor(3) as pool:
        runs = [r for lane in pool.map(slot, [accounts[i::3] for i in range(3)]) for r in lane]
    assert [r["video_list"] for r in runs] == [3] * 12
    assert sandbox_429s(server) == 0
    assert server.request_counts()["video_list"] == 36
    for account in accounts:
        assert len(rows_of(env, "videos", account)) == 60
