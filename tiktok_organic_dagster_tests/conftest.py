"""Shared fixtures live in fixtures_* modules, one per area, so owners do not collide.

Also the order `make test`'s pytest-xdist workers get the tests in: the longest first, one at a time.
"""

from __future__ import annotations

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling

pytest_plugins = [
    "tiktok_organic_dagster_tests.fixtures_sandbox",
    "tiktok_organic_dagster_tests.fixtures_s3",
    "tiktok_organic_dagster_tests.fixtures_postgres",
]

# The tests that take longest from start to end (mostly waiting: child processes, servers, paced requests, the
# schedule's minute tick), longest first. Started first, their waits overlap the many short tests instead of
# running on alone at the end of the suite. A test missing here just runs in file order after these; a name that
# no longer exists matches nothing.
LONG_FIRST = (
    "test_postgres_instance.py::",
    "test_demo_agency.py::",
    "test_accounts_processes.py::test_four_accounts_in_parallel_processes_stay_under_the_app_limit",
    "test_component.py::test_dg_project_scaffold_check_list_launch",
    "test_demo.py::",
    "test_graphql_webserver.py::",
    "test_accounts.py::test_remove_with_purge_leaves_no_row_of_the_account_anywhere",
    "test_accounts.py::test_each_account_lands_exactly_in_its_own_partition_full_incremental_full",
    "test_accounts_triggers.py::test_the_catchup_sensor_asks_a_full_sync_only_for_the_accounts_that_need_one",
    "test_faults_heal.py::test_strict_rotation_over_ten_runs",
    "test_accounts_triggers.py::test_an_account_whose_refresh_token_expires_within_14_days_gets_a_warning",
    "test_dev.py::test_make_dev_serves_the_workspace_location_and_leaves_no_process_after_sigterm",
    "test_faults_stop.py::test_disk_full_during_delta_write",
    "test_concurrency.py::test_two_writers_without_the_limit_stay_consistent",
    "test_readme.py::test_sandbox_cli_block_runs_as_written",
    "test_settings.py::test_definitions_validate_shows_the_ignored_env_vars",
    "test_accounts_processes.py::test_twelve_short_runs_back_to_back_through_three_slots_never_trip_the_limit",
    "test_security.py::test_no_secret_in_anything_the_project_writes_or_prints",
    "test_definitions.py::test_dagster_definitions_validate_cli",
    "test_accounts.py::test_a_revoked_account_fails_alone_and_names_itself",
    "test_accounts.py::test_rotated_tokens_stay_per_account_over_five_rounds",
)
# Modules whose tests share module-scoped fixtures that start whole deployments: one worker runs all of them,
# so the deployments start once.
WHOLE_MODULES = ("test_postgres_instance.py",)


def _rank(item: pytest.Item) -> int:
    name = item.nodeid.rsplit("/", 1)[-1]
    return next((i for i, prefix in enumerate(LONG_FIRST) if name.startswith(prefix)), len(LONG_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: within a rank, and for every other test, the collection order stays


class _TestByTestScheduling(LoadScopeScheduling):
    """``--dist load``'s job, handing out one test at a time in collection order (plain ``load`` sends each
    worker a block of a quarter of its share first, so the long tests would queue behind each other), except
    that a module of WHOLE_MODULES goes to one worker as one unit."""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return module if module.rsplit("/", 1)[-1] in WHOLE_MODULES else nodeid


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: unknown under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadScopeScheduling | None:
    """Used for `-n N` (whose default is ``--dist load``); any other ``--dist`` keeps pytest-xdist's own."""
    if config.getvalue("dist") != "load":
        return None
    return _TestByTestScheduling(config, log)
