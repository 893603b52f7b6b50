"""What starts a multi-account source's runs: the OAuth onboarding registering a partition, the schedules
(one run per registered account and tick), and the catch-up sensor (only the accounts that need a full sync)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from tiktok_organic_dagster.defs.definitions import build_definitions
from tiktok_organic_dagster.names import (
    ACCOUNT_TAG,
    CATCHUP_TRIGGER,
    TRIGGER_TAG,
    catchup_sensor_name,
    schedule_name,
)
from tiktok_organic_dagster.settings import load_settings
from tiktok_organic_dagster_tests.accounts_helpers import (
    FULL,
    SOURCE,
    SYNC,
    agency_env,
    assert_account_matches_truth,
    instance_of,
    onboard,
    run_account,
)
from tiktok_organic_dagster_tests.helpers import patched_env
from tiktok_organic_dagster_tests.test_authorize_sandbox import run_cli


def _tick(env: dict[str, str], name: str, cursor: str | None = None) -> object:
    with patched_env(env):
        defs = build_definitions(load_settings())
        with instance_of(env) as instance:
            repo = defs.get_repository_def()
            if not name.endswith("_sensor"):
                schedule = defs.resolve_schedule_def(name)
            else:
                sensor = defs.resolve_sensor_def(name)
                # (the daemon evaluates ticks inside a partition-loading context of its instance; a test must
                # open one itself, and Dagster has no public way to)
                from dagster._core.definitions.partitions.context import partition_loading_context

                with dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=repo,
                                             resources=dict(defs.resources or {})) as context, \
                        partition_loading_context(dynamic_partitions_store=instance):
                    return sensor.evaluate_tick(context)
            context = dg.build_schedule_context(instance=instance, repository_def=repo,
                                                scheduled_execution_time=datetime(2026, 12, 2, 6, tzinfo=timezone.utc))
            return schedule.evaluate_tick(context)


def test_authorizing_an_account_in_the_browser_registers_it_and_it_syncs(sandbox_factory, tmp_path: Path,
                                                                         monkeypatch, capsys):
    server = sandbox_factory(accounts=2, video_count=20)
    env = agency_env(server, tmp_path)
    for var in ("TIKTOK_REFRESH_TOKEN", "TIKTOK_CLIENT_ID", "TIKTOK_TOKEN_STORE_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TIKTOK_CLIENT_SECRET", server.client_secret)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    rc, out, browser = run_cli(server, env["TIKTOK_TOKEN_STORE"], "account_2", "--source", SOURCE, "--account",
                               "account_2")
    assert rc == 0, capsys.readouterr().err
    assert browser.printed_url.startswith(f"{server.base_url}/v2/auth/authorize/?")  # the sandbox's own page
    with patched_env(env), instance_of(env) as instance:
        assert instance.get_dynamic_partitions(f"{SOURCE}_accounts") == ["account_2"]
    assert run_account(env, "account_2", FULL).success
    assert_account_matches_truth(env, server, "account_2")


def test_schedules_request_one_run_per_registered_account_and_tick(sandbox_factory, tmp_path: Path):
    server = sandbox_factory(accounts=3, video_count=10)
    env = agency_env(server, tmp_path)
    empty = _tick(env, schedule_name(SYNC))
    assert not empty.run_requests and "no account registered" in (empty.skip_message or "")  # type: ignore[attr-defined]
    onboard(server, env, ("account_1", "account_3"))
    for job in (SYNC, FULL):
        result = _tick(env, schedule_name(job))
        requests = result.run_requests  # type: ignore[attr-defined]
        assert sorted(r.partition_key for r in requests) == ["account_1", "account_3"]
        assert len({r.run_key for r in requests}) == 2 and all("2026-12-02T06:00" in r.run_key for r in requests)
        assert {r.tags[ACCOUNT_TAG] for r in requests} == {f"{SOURCE}.account_1", f"{SOURCE}.account_3"}


def test_the_catchup_sensor_asks_a_full_sync_only_for_the_accounts_that_need_one(sandbox_factory, tmp_path: Path):
    server = sandbox_factory(accounts=3, video_count=10)
    env = agency_env(server, tmp_path)
    onboard(server, env, ("account_1", "account_2", "account_3"))
    assert run_account(env, "account_1", FULL).success
    assert run_account(env, "account_2", SYNC).success  # a first sync is full as well
    first = _tick(env, catchup_sensor_name(SOURCE))
    requests = first.run_requests  # type: ignore[attr-defined]
    assert [r.partition_key for r in requests] == ["account_3"]
    assert requests[0].tags[TRIGGER_TAG] == CATCHUP_TRIGGER and requests[0].tags[ACCOUNT_TAG] == f"{SOURCE}.account_3"
    # the same stale state is not asked for twice
    again = _tick(env, catchup_sensor_name(SOURCE), cursor=first.cursor)  # type: ignore[attr-defined]
    assert not again.run_requests  # type: ignore[attr-defined]
    assert "account_3: full sync already requested" in (again.skip_message or "")  # type: ignore[attr-defined]


def test_adding_an_account_says_how_to_set_the_apps_pool_until_it_is_set(sandbox_factory, tmp_path: Path):
    import io

    from tiktok_organic_dagster.cli.accounts import main

    server = sandbox_factory(accounts=2, video_count=5)
    env = agency_env(server, tmp_path, parallel=3)

    def add(account: str) -> str:
        out = io.StringIO()
        with patched_env({**env, "TOKEN": server.current_refresh_token(account) or ""}):
            assert main(["add", "--source", SOURCE, "--account", account, "--refresh-token-env", "TOKEN"],
                        stdout=out) == 0
        return out.getvalue()

    assert "run `dagster instance concurrency set tiktok_api_agency 3`" in add("account_1")
    with patched_env(env), instance_of(env) as instance:
        instance.event_log_storage.set_concurrency_slots("tiktok_api_agency", 3)  # what that command does
    assert "note:" not in add("account_2")


def test_an_account_whose_refresh_token_expires_within_14_days_gets_a_warning(sandbox_factory, tmp_path: Path):
    import time
    from dataclasses import replace

    from tiktok_organic_dagster.tiktok.token_store import TokenStore

    server = sandbox_factory(accounts=2, video_count=10)
    env = agency_env(server, tmp_path)
    onboard(server, env, ("account_1", "account_2"))
    assert run_account(env, "account_1", FULL).success and run_account(env, "account_2", FULL).success
    store = TokenStore(Path(env["TIKTOK_TOKEN_STORE"]))
    with store.locked():  # account_2 was authorized almost a year ago: 10 days left
        entry = store.get(f"{SOURCE}.account_2")
        assert entry is not None
        store.put(f"{SOURCE}.account_2", replace(entry, refresh_expires_at=time.time() + 10 * 86400))
    results = {a: run_account(env, a, SYNC) for a in ("account_1", "account_2")}
    for account, result in results.items():
        checks = [e.asset_check_evaluation_data for e in result.all_events
                  if e.event_type_value == "ASSET_CHECK_EVALUATION"
                  and e.asset_check_evaluation_data.check_name == "refresh_token_expiry"]
        assert len(checks) == 2  # one per table of the run
        if account == "account_1":
            assert all(c.passed for c in checks)
        else:
            assert not any(c.passed for c in checks)
            assert all(c.severity == dg.AssetCheckSeverity.WARN for c in checks)
            action = checks[0].metadata["action"].value
            assert "account 'account_2'" in action and "re-authorize within 10 days" in action
    assert all(r.success for r in results.values())  # a warning, not a failed run
