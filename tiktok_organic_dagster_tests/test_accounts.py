"""Many accounts of one TikTok app as partitions of one asset set, against the multi-account sandbox over
real HTTP: onboarding, exact per-account tables, rotation, failure isolation, offboarding with purge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
from deltalake import DeltaTable

from tiktok_organic_dagster.defs.accounts import build_accounts_sensor
from tiktok_organic_dagster.defs.definitions import build_definitions
from tiktok_organic_dagster.names import ACCOUNT_COLUMN, accounts_partitions_name, client_resource_key
from tiktok_organic_dagster.settings import load_settings
from tiktok_organic_dagster.tiktok.token_store import TokenStore
from tiktok_organic_dagster_tests.accounts_helpers import (
    FULL,
    SOURCE,
    SYNC,
    TABLES,
    accounts_cli,
    agency_env,
    assert_account_matches_truth,
    catalog,
    instance_of,
    onboard,
    plain_run,
    rows_of,
    run_account,
    table_uri,
    token_env,
)
from tiktok_organic_dagster_tests.helpers import expire_access_tokens, patched_env

ACCOUNTS = ("account_1", "account_2", "account_3")


def _registered(env: dict[str, str]) -> list[str]:
    with patched_env(env), instance_of(env) as instance:
        return list(instance.get_dynamic_partitions(accounts_partitions_name(SOURCE)))


def _evaluate_accounts_sensor(env: dict[str, str]) -> Any:
    with patched_env(env):
        source = load_settings().sources[0]
        defs = build_definitions(load_settings())
        sensor = build_accounts_sensor(source)
        resource = defs.resources[client_resource_key(SOURCE)]
        with instance_of(env) as instance, dg.build_sensor_context(
                instance=instance, resources={client_resource_key(SOURCE): resource}) as context:
            result = sensor.evaluate_tick(context)  # what the daemon calls on each tick
            for request in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys or []))
            return result


def test_each_account_lands_exactly_in_its_own_partition_full_incremental_full(sandbox_factory, tmp_path: Path):
    server = sandbox_factory(accounts=3, video_count=60)
    env = agency_env(server, tmp_path, listed=("account_1",))
    onboard(server, env, ("account_2", "account_3"))
    # the settings' account is registered by the sensor once its token variable is set, not before
    missing = _evaluate_accounts_sensor({**env, token_env("account_1"): ""})
    assert not missing.dynamic_partitions_requests and "account_1" in (missing.skip_message or "")
    _evaluate_accounts_sensor(env)
    assert sorted(_registered(env)) == list(ACCOUNTS)

    for account in ACCOUNTS:
        assert run_account(env, account, FULL).success
    for account in ACCOUNTS:
        assert_account_matches_truth(env, server, account)
    for table in TABLES:
        dt = DeltaTable(table_uri(env, table))
        assert dt.metadata().partition_columns == [ACCOUNT_COLUMN], table
        assert sorted(catalog(env).partition_values(table_uri(env, table), ACCOUNT_COLUMN)) == list(ACCOUNTS)

    # the API moves on differently per account; incremental runs pick up each account's own changes
    server.add_videos(2, account="account_1")
    server.bump_counters(account="account_2")
    victim = server.videos("account_3")[-1]["id"]
    other_rows = {a: rows_of(env, "videos", a) for a in ("account_1", "account_3")}
    for account in ("account_1", "account_2"):
        result = run_account(env, account, SYNC)
        assert result.success
        materialization = result.asset_materializations_for_node(f"{SOURCE}__sync")[0]
        assert materialization.partition == account
    assert_account_matches_truth(env, server, "account_1")
    assert_account_matches_truth(env, server, "account_2")
    assert rows_of(env, "videos", "account_3") == other_rows["account_3"]  # untouched by the others' commits

    server.delete_video(victim, account="account_3")
    plain_run(env, "account_3", full=True)  # (the plain layers: Dagster's part was shown above)
    for account in ACCOUNTS:
        assert_account_matches_truth(env, server, account)
    assert victim not in {r["id"] for r in rows_of(env, "videos", "account_3")}


def test_rotated_tokens_stay_per_account_over_five_rounds(sandbox_factory, tmp_path: Path):
    server = sandbox_factory(accounts=2, video_count=30, strict_rotation=True)
    env = agency_env(server, tmp_path)
    onboard(server, env, ("account_1", "account_2"))
    store = TokenStore(Path(env["TIKTOK_TOKEN_STORE"]))
    assert run_account(env, "account_1").success  # through Dagster once, then as plain runs (cheaper)
    for _ in range(5):
        expire_access_tokens(env["TIKTOK_TOKEN_STORE"])  # a day later: every run must refresh (and rotate)
        before = {a: server.current_refresh_token(a) for a in ("account_1", "account_2")}
        for account in ("account_1", "account_2"):
            assert plain_run(env, account)["oauth_token"] == 1
        for account in ("account_1", "account_2"):
            stored = store.get(f"{SOURCE}.{account}")
            assert stored is not None
            assert stored.refresh_token == server.current_refresh_token(account) != before[account]
    assert server.current_refresh_token("account_1") != server.current_refresh_token("account_2")
    for account in ("account_1", "account_2"):
        assert_account_matches_truth(env, server, account)


def test_a_revoked_account_fails_alone_and_names_itself(sandbox_factory, tmp_path: Path):
    server = sandbox_factory(accounts=3, video_count=30)
    env = agency_env(server, tmp_path)
    onboard(server, env, ACCOUNTS)
    server.revoke_all_tokens(account="account_2")
    expire_access_tokens(env["TIKTOK_TOKEN_STORE"])
    results = {a: run_account(env, a, FULL, raise_on_error=False) for a in ACCOUNTS}
    assert results["account_1"].success and results["account_3"].success
    failed = results["account_2"]
    assert not failed.success
    message = "\n".join(str(e.event_specific_data) for e in failed.all_events if e.is_failure)
    assert "account 'account_2'" in message and "tiktok-organic-authorize --source agency --account account_2" \
        in message
    assert rows_of(env, "videos", "account_2") == []
    for account in ("account_1", "account_3"):
        assert_account_matches_truth(env, server, account)
    with patched_env(env), instance_of(env) as instance:
        key = dg.AssetKey(["raw", "tiktok_organic", "videos"])
        assert instance.get_materialized_partitions(key) == {"account_1", "account_3"}


def test_remove_with_purge_leaves_no_row_of_the_account_anywhere(sandbox_factory, tmp_path: Path):
    server = sandbox_factory(accounts=3, video_count=40)
    env = agency_env(server, tmp_path)
    onboard(server, env, ACCOUNTS)
    for account in ACCOUNTS:
        plain_run(env, account, full=True)  # what the runs write, without Dagster's start-up per run
    server.bump_counters(account="account_2")
    plain_run(env, "account_2")  # older versions of account_2's files exist too
    gone_ids = {v["id"] for v in server.videos("account_2")}
    gone_open_id = server.user("account_2")["open_id"]

    proc = accounts_cli(env, "remove", "--source", SOURCE, "--account", "account_2", "--purge")
    assert proc.returncode == 0, proc.stderr
    assert "purged" in proc.stdout
    # revoked at TikTok: the account's refresh token is dead for everyone now
    assert server.current_refresh_token("account_2") is None
    assert TokenStore(Path(env["TIKTOK_TOKEN_STORE"])).get(f"{SOURCE}.account_2") is None
    assert "account_2" not in _registered(env)
    for table in TABLES:
        assert rows_of(env, table, "account_2") == []
    # nothing of it in any data file of the lake, current or not
    for path in Path(env["TIKTOK_DELTA_ROOT"]).rglob("*.parquet"):
        assert "account=account_2" not in str(path)
        data = pq.read_table(path)
        for column in ("id", "open_id"):
            if column in data.column_names:
                assert not set(map(str, data.column(column).to_pylist())) & (gone_ids | {gone_open_id}), path
    for account in ("account_1", "account_3"):
        assert_account_matches_truth(env, server, account)

    listing = accounts_cli(env, "list", "--source", SOURCE)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:2] == ["account", "registered"]
    assert [line.split()[0] for line in lines[1:]] == ["account_1", "account_3"]
    assert all("UTC" in line for line in lines[1:])  # last sync time per account
