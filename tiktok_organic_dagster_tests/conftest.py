"""Shared fixtures live in fixtures_* modules, one per area, so owners do not collide."""

pytest_plugins = [
    "tiktok_organic_dagster_tests.fixtures_sandbox",
    "tiktok_organic_dagster_tests.fixtures_s3",
    "tiktok_organic_dagster_tests.fixtures_postgres",
]
