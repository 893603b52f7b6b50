"""Wires settings -> resources -> assets, checks, jobs, schedules, sensors for every configured source.

Resources are built per source: a TikTok client whose secrets come from the source's environment variables
through ``EnvVar`` (read at run time, never shown in the UI), and a Delta catalog with the source's retention.
Pointing ``TIKTOK_API_BASE_URL`` at the bundled sandbox is what turns this into the local demo.
"""

from __future__ import annotations

import os
import warnings

import dagster as dg

from tiktok_organic_dagster.assets import build_stream_assets, catalog_key, client_key
from tiktok_organic_dagster.checks import build_monotonic_check
from tiktok_organic_dagster.delta_catalog import DeltaCatalog
from tiktok_organic_dagster.jobs import build_jobs, build_schedules
from tiktok_organic_dagster.sensors import build_catchup_sensor
from tiktok_organic_dagster.settings import ProjectSettings, SourceSettings, load_settings
from tiktok_organic_dagster.tiktok_client import TikTokClient

DEFAULT_API_BASE_URL = "https://open.tiktokapis.com"


def build_resources(source: SourceSettings) -> dict[str, dg.ConfigurableResource]:
    creds = source.credentials
    # The refresh token may live only in the token store (written by `tiktok-organic-authorize`); an unset
    # variable then means "use the store", not an error.
    refresh = dg.EnvVar(creds.refresh_token_env) if os.environ.get(creds.refresh_token_env) else ""
    client = TikTokClient(
        client_id=dg.EnvVar(creds.client_id_env),
        client_secret=dg.EnvVar(creds.client_secret_env),
        refresh_token=refresh,
        refresh_token_env=creds.refresh_token_env,
        api_base_url=os.environ.get("TIKTOK_API_BASE_URL", DEFAULT_API_BASE_URL),
        token_store_key=source.name,
    )
    catalog = DeltaCatalog(delta_log_retention_days=source.delta_log_retention_days)
    return {client_key(source): client, catalog_key(source): catalog}


def build_source_definitions(source: SourceSettings) -> dg.Definitions:
    assets = build_stream_assets(source)
    history_checks = []
    if "videos" in source.streams:
        # Only views are lifetime counters that never go down: likes, comments, shares, followers and
        # video counts drop legitimately (unlikes, deletions, unfollows), so checking them would cry wolf.
        cfg = source.streams["videos"]
        table = (cfg.layer, cfg.folder, source.table_name("videos") + "_history")
        history_checks.append(
            build_monotonic_check(dg.AssetKey(list(table)), table, catalog_key(source), "id", ("view_count",))
        )
    with warnings.catch_warnings():  # beta API; the check compares dagster/column_schema between runs
        warnings.simplefilter("ignore", dg.BetaWarning)
        schema_checks = dg.build_column_schema_change_checks(
            assets=[dg.AssetKey(source.asset_key_path(stream)) for stream in source.streams]
        )
    sensors = [build_catchup_sensor(source)] if source.full_sync.enabled else []
    return dg.Definitions(
        assets=assets,
        asset_checks=[*history_checks, *schema_checks],
        jobs=build_jobs(source, assets),
        schedules=build_schedules(source),
        sensors=sensors,
        resources=build_resources(source),
    )


def build_definitions(settings: ProjectSettings) -> dg.Definitions:
    merged = dg.Definitions.merge(*(build_source_definitions(s) for s in settings.sources))
    # Steps are I/O-bound on one account's API budget: one process avoids paying Python start-up per step.
    return dg.Definitions.merge(merged, dg.Definitions(executor=dg.in_process_executor))


defs = build_definitions(load_settings())
