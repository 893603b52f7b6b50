"""Jobs and schedules of one source.

``<source>_sync`` runs each stream with its configured sync type; ``<source>_full_sync`` forces FULL_TABLE.
Both carry the run tag ``tiktok_organic/source=<source>``; the project's dagster.yaml limits that tag to one
run at a time per value, so the regular and the full sync never write the same Delta tables at once.

A multi-account source's jobs are partitioned by account instead: its schedules request one run per
registered account, tagged ``tiktok_organic/account=<source>.<account>`` (limited to one run per value), and
its runs share the app through the source's pool.
"""

from __future__ import annotations

import dagster as dg

from tiktok_organic_dagster.defs.assets import SyncConfig
from tiktok_organic_dagster.names import (
    ACCOUNT_TAG,
    SOURCE_TAG,
    SYNC_KIND_TAG,
    account_token_key,
    accounts_partitions_name,
    full_sync_job_name,
    schedule_name,
    sync_job_name,
    sync_op_name,
)
from tiktok_organic_dagster.settings import SourceSettings


def build_jobs(source: SourceSettings, assets: list[dg.AssetsDefinition]) -> list[dg.UnresolvedAssetJobDefinition]:
    selection = dg.AssetSelection.assets(*assets)
    # a multi-account source's runs are limited per account (their run requests' tag), not per source
    tags = {} if source.partitioned else {SOURCE_TAG: source.name}
    full_config = dg.RunConfig(ops={sync_op_name(source.name): SyncConfig(full_refresh=True)})
    return [
        dg.define_asset_job(
            sync_job_name(source.name),
            selection=selection,
            description=f"Sync TikTok source `{source.name}` with each stream's sync type.",
            tags=tags,
        ),
        dg.define_asset_job(
            full_sync_job_name(source.name),
            selection=selection,
            config=full_config,
            description=f"Full sync of TikTok source `{source.name}`: every stream FULL_TABLE (deleted videos "
            "leave the table).",
            tags={**tags, SYNC_KIND_TAG: "full"},
        ),
    ]


def account_run_request(source: str, account: str, run_key: str, tags: dict[str, str] | None = None
                        ) -> dg.RunRequest:
    """One account's run: its partition, and the tag that keeps its runs from overlapping."""
    return dg.RunRequest(run_key=run_key, partition_key=account,
                         tags={**(tags or {}), ACCOUNT_TAG: account_token_key(source, account)})


def _per_account(source: SourceSettings, job: str, cron: str, what: str) -> dg.ScheduleDefinition:
    partitions = accounts_partitions_name(source.name)

    @dg.schedule(name=schedule_name(job), job_name=job, cron_schedule=cron,
                 execution_timezone=source.trigger.timezone, default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"{what} of `{source.name}`: one run per registered account.")
    def _schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        accounts = context.instance.get_dynamic_partitions(partitions)
        if not accounts:
            return dg.SkipReason(f"no account registered in '{partitions}' (tiktok-organic-accounts add)")
        tick = context.scheduled_execution_time.isoformat()
        return [account_run_request(source.name, a, f"{a}:{tick}") for a in accounts]

    return _schedule


def build_schedules(source: SourceSettings) -> list[dg.ScheduleDefinition]:
    """RUNNING by default: a connector is expected to sync as soon as the daemon runs."""
    wanted = [(sync_job_name(source.name), source.trigger.cron, "Regular sync trigger")]
    if source.full_sync.enabled:
        wanted.append((full_sync_job_name(source.name), source.full_sync.cron, "Additional periodic full sync"))
    if source.partitioned:
        return [_per_account(source, job, cron, what) for job, cron, what in wanted]
    return [
        dg.ScheduleDefinition(
            name=schedule_name(job),
            job_name=job,
            cron_schedule=cron,
            execution_timezone=source.trigger.timezone,
            description=f"{what} of `{source.name}`.",
            default_status=dg.DefaultScheduleStatus.RUNNING,
        )
        for job, cron, what in wanted
    ]
