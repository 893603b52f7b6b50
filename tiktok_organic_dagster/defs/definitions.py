"""Wires settings -> resources -> assets, checks, jobs, schedules, sensors for every configured source.

Built lazily (``@dg.definitions``): importing the package reads no settings, so the command-line tools and
the sandbox work whatever the ``TIKTOK_*`` variables say, while loading the code location still fails with
the setting's name. Secrets reach the resources as ``dg.EnvVar`` (read at run time, never shown in the UI).
Pointing ``TIKTOK_API_BASE_URL`` at the bundled sandbox is what turns this into the local demo.
"""

from __future__ import annotations

import logging
import os

import dagster as dg

from tiktok_organic_dagster.defs.accounts import build_accounts_sensor
from tiktok_organic_dagster.defs.assets import StreamSpecs, build_source_asset, source_specs
from tiktok_organic_dagster.defs.checks import build_monotonic_check, build_schema_change_check
from tiktok_organic_dagster.defs.jobs import build_jobs, build_schedules
from tiktok_organic_dagster.defs.resources import DeltaCatalogResource, TikTokClientResource
from tiktok_organic_dagster.defs.sensors import build_catchup_sensor
from tiktok_organic_dagster.defs.translation import Translator
from tiktok_organic_dagster.names import (
    API_BASE_URL_ENV,
    DEFAULT_API_BASE_URL,
    catalog_resource_key,
    client_resource_key,
)
from tiktok_organic_dagster.settings import ProjectSettings, SourceSettings, load_settings
from tiktok_organic_dagster.tiktok.streams import STREAMS

_log = logging.getLogger(__name__)


def _paging_parallelism(source: SourceSettings) -> int:
    """A multi-account source's runs are paced at their share of the app's limit, so time slices cannot list
    faster than one cursor walk there, only with more requests: one walk unless the setting says otherwise."""
    videos = source.streams.get("videos")
    if videos is None:
        return 1
    if source.partitioned and "paging_parallelism" not in videos.model_fields_set:
        return 1
    return videos.paging_parallelism


def build_resources(source: SourceSettings, delta_root: str | None = None, token_store: str | None = None
                    ) -> dict[str, dg.ConfigurableResource]:
    """Unset ``delta_root`` / ``token_store``: ``$TIKTOK_DELTA_ROOT`` / ``$TIKTOK_TOKEN_STORE`` at run time, then
    the defaults."""
    creds = source.credentials
    unset = [name for name in (creds.client_id_env, creds.client_secret_env) if not os.environ.get(name)]
    if unset:  # a warning, not an error: run workers may have another environment than this process
        _log.warning("TikTok source '%s': %s not set here; runs need them where they execute.", source.name,
                     " and ".join(unset))
    # The refresh token may live only in the token store (written by `tiktok-organic-authorize`); an unset
    # variable then means "use the store", not an error.
    refresh = dg.EnvVar(creds.refresh_token_env) if os.environ.get(creds.refresh_token_env) and \
        not source.partitioned else ""
    # A multi-account source's runs share the app's limit: each paces itself at its share, and the pool
    # (limit max_parallel_accounts) bounds how many run at once (see tiktok.rate_budget).
    share = max(source.requests_per_minute // source.max_parallel_accounts, 1) if source.partitioned \
        else source.requests_per_minute
    client = TikTokClientResource(
        client_id_env=creds.client_id_env,  # read at run time; a missing one fails the run's pre-flight
        client_secret_env=creds.client_secret_env,
        refresh_token=refresh,
        refresh_token_env=creds.refresh_token_env,
        api_base_url=os.environ.get(API_BASE_URL_ENV, DEFAULT_API_BASE_URL),
        token_store_path=token_store,
        token_store_key=source.name,
        paging_parallelism=_paging_parallelism(source),
        requests_per_minute=share,
        rate_window_seconds=source.rate_window_seconds,
        rate_pacing=source.partitioned,
        accounts_source=source.name if source.partitioned else "",
        account_refresh_token_envs={a.name: a.refresh_token_env for a in source.accounts or ()
                                    if a.refresh_token_env},
    )
    catalog = DeltaCatalogResource(root_uri=delta_root, delta_log_retention_days=source.delta_log_retention_days)
    return {client_resource_key(source.name): client, catalog_resource_key(source.name): catalog}


def _history_checks(source: SourceSettings, specs: dict[str, StreamSpecs]) -> list[dg.AssetChecksDefinition]:
    checks = []
    for stream, (_, history) in specs.items():
        spec, cfg = STREAMS[stream], source.streams[stream]
        if not spec.monotonic_counters:
            continue
        table = (cfg.layer, cfg.folder, source.table_name(stream) + "_history")
        checks.append(build_monotonic_check(history.key, table, catalog_resource_key(source.name), spec.key,
                                            spec.monotonic_counters))
    return checks


def build_source_definitions(source: SourceSettings, *, translate: Translator | None = None,
                             delta_root: str | None = None, token_store: str | None = None) -> dg.Definitions:
    """One source's assets, checks, jobs, schedules, sensor and resources: the one builder behind the settings
    file and the component. ``translate`` renames assets (see ``translation``); the tables stay put."""
    specs = source_specs(source, translate)
    asset = build_source_asset(source, specs)
    schema_checks = [build_schema_change_check(source.name, [table.key for table, _ in specs.values()])]
    sensors = [build_catchup_sensor(source)] if source.full_sync.enabled else []
    if source.partitioned:
        sensors.append(build_accounts_sensor(source))
    return dg.Definitions(
        assets=[asset],
        asset_checks=[*_history_checks(source, specs), *schema_checks],
        jobs=build_jobs(source, [asset]),
        schedules=build_schedules(source),
        sensors=sensors,
        resources=build_resources(source, delta_root, token_store),
    )


def build_definitions(settings: ProjectSettings) -> dg.Definitions:
    merged = dg.Definitions.merge(*(build_source_definitions(s) for s in settings.sources))
    # Steps are I/O-bound on one account's API budget: one process avoids paying Python start-up per step.
    return dg.Definitions.merge(merged, dg.Definitions(executor=dg.in_process_executor))


@dg.definitions
def defs() -> dg.Definitions:
    """The code location: every source of the settings (``TIKTOK_ORGANIC_CONFIG`` or ``TIKTOK_*``)."""
    return build_definitions(load_settings())
