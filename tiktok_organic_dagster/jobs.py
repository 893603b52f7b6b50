"""Jobs and schedules of one source.

``<source>_sync`` runs each stream with its configured sync type; ``<source>_full_sync`` forces FULL_TABLE.
Both carry the run tag ``tiktok_organic/source=<source>``; the project's dagster.yaml limits that tag to one
run at a time per value, so the regular and the full sync never write the same Delta tables at once.
"""

from __future__ import annotations

import dagster as dg

from tiktok_organic_dagster.assets import SOURCE_TAG, SyncConfig, sync_op_name
from tiktok_organic_dagster.settings import SourceSettings


def sync_job_name(source: SourceSettings) -> str:
    return f"{source.name}_sync"


def full_sync_job_name(source: SourceSettings) -> str:
    return f"{source.name}_full_sync"


def build_jobs(source: SourceSettings, assets: list[dg.AssetsDefinition]) -> list[dg.UnresolvedAssetJobDefinition]:
    selection = dg.AssetSelection.assets(*assets)
    tags = {SOURCE_TAG: source.name}
    full_config = dg.RunConfig(ops={sync_op_name(source): SyncConfig(full_refresh=True)})
    return [
        dg.define_asset_job(
            sync_job_name(source),
            selection=selection,
            description=f"Sync TikTok source `{source.name}` with each stream's sync type.",
            tags=tags,
        ),
        dg.define_asset_job(
            full_sync_job_name(source),
            selection=selection,
            config=full_config,
            description=f"Full sync of TikTok source `{source.name}`: every stream FULL_TABLE (deleted videos "
            "leave the table).",
            tags={**tags, "tiktok_organic/sync": "full"},
        ),
    ]


def build_schedules(source: SourceSettings) -> list[dg.ScheduleDefinition]:
    """RUNNING by default: a connector is expected to sync as soon as the daemon runs."""
    wanted = [(sync_job_name(source), source.trigger.cron, "Regular sync trigger")]
    if source.full_sync.enabled:
        wanted.append((full_sync_job_name(source), source.full_sync.cron, "Additional periodic full sync"))
    return [
        dg.ScheduleDefinition(
            name=f"{job}_schedule",
            job_name=job,
            cron_schedule=cron,
            execution_timezone=source.trigger.timezone,
            description=f"{what} of `{source.name}`.",
            default_status=dg.DefaultScheduleStatus.RUNNING,
        )
        for job, cron, what in wanted
    ]
