"""Catch-up sensor: a missed schedule tick or a failed full sync must not leave deleted videos around forever.

The truth about the last full sync is the Delta commit history (each commit records its sync type), not the
Dagster instance, which may be temporary or another deployment's. The cursor remembers which state a run was
requested for, so one stale state yields one request; it asks again only after another full-sync period.
"""


import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import dagster as dg

from tiktok_organic_dagster.defs.jobs import account_run_request
from tiktok_organic_dagster.defs.resources import DeltaCatalogResource
from tiktok_organic_dagster.lake import SYNC_FULL, DeltaCatalog
from tiktok_organic_dagster.names import (
    ACCOUNT_COLUMN,
    CATCHUP_TRIGGER,
    TRIGGER_TAG,
    accounts_partitions_name,
    catalog_resource_key,
    catchup_sensor_name,
    full_sync_app_id,
    full_sync_job_name,
)
from tiktok_organic_dagster.settings import SourceSettings, cron_period


def last_full_sync(catalog: DeltaCatalog, source: SourceSettings, account: str | None = None) -> datetime | None:
    """Oldest of the streams' last full syncs: the source (or one of its accounts) is only as fresh as its
    stalest table."""
    times: list[datetime] = []
    part = (ACCOUNT_COLUMN, account) if account is not None else None
    for stream, cfg in source.streams.items():
        uri = catalog.table_uri(cfg.layer, cfg.folder, source.table_name(stream))
        when = catalog.last_commit_time(uri, sync_type=SYNC_FULL, app_id=full_sync_app_id(account),
                                        partition=part) if catalog.exists(uri) else None
        if when is None:
            return None
        times.append(when)
    return min(times)


def decide(
    last_full: datetime | None, now: datetime, period: timedelta, grace: timedelta, cursor: str | None
) -> tuple[bool, str, str]:
    """Pure decision: (request?, new cursor, reason)."""
    state = last_full.isoformat() if last_full else "never"
    previous = json.loads(cursor) if cursor else {}
    if last_full is not None and now - last_full <= period + grace:
        return False, json.dumps({"for": state, "at": previous.get("at")}), f"last full sync {state} is recent"
    if previous.get("for") == state and previous.get("at"):
        asked = datetime.fromisoformat(previous["at"])
        if now - asked < period:
            return False, cursor or "", f"full sync already requested at {previous['at']} for state {state}"
    return True, json.dumps({"for": state, "at": now.isoformat()}), f"last full sync {state} is older than " \
        f"{period + grace}"


def _per_account_requests(catalog: DeltaCatalog, source: SourceSettings, accounts: Sequence[str], now: datetime,
                          period: timedelta, grace: timedelta, cursor: str | None
                          ) -> tuple[list[dg.RunRequest], str, list[str]]:
    """The accounts that need a full sync, each with its own decision and cursor (a JSON map by account)."""
    previous: dict[str, str] = json.loads(cursor) if cursor else {}
    state: dict[str, str] = {}
    requests, reasons = [], []
    for account in accounts:
        request, state[account], reason = decide(last_full_sync(catalog, source, account), now, period, grace,
                                                 previous.get(account))
        reasons.append(f"{account}: {reason}")
        if request:
            at = json.loads(state[account])
            requests.append(account_run_request(source.name, account, f"catchup:{account}:{at['for']}:{at['at']}",
                                                {TRIGGER_TAG: CATCHUP_TRIGGER}))
    return requests, json.dumps(state, sort_keys=True), reasons


def build_catchup_sensor(source: SourceSettings) -> dg.SensorDefinition:
    dk = catalog_resource_key(source.name)
    period = cron_period(source.full_sync.cron, source.trigger.timezone)
    grace = timedelta(hours=source.full_sync.grace_hours)
    partitions = accounts_partitions_name(source.name)

    @dg.sensor(
        name=catchup_sensor_name(source.name),
        job_name=full_sync_job_name(source.name),
        minimum_interval_seconds=15 * 60,
        required_resource_keys={dk},
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests a full sync of `{source.name}` when the last one recorded in the Delta history "
        "is older than the full-sync period plus grace.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        resource: DeltaCatalogResource = getattr(context.resources, dk)
        now = datetime.now(timezone.utc)
        if source.partitioned:
            accounts = context.instance.get_dynamic_partitions(partitions)
            runs, state, reasons = _per_account_requests(resource.get_catalog(), source, accounts, now, period,
                                                         grace, context.cursor)
            if not runs:
                return dg.SensorResult(skip_reason="; ".join(reasons)[:1000] or "no account registered",
                                       cursor=state)
            return dg.SensorResult(run_requests=runs, cursor=state)
        last = last_full_sync(resource.get_catalog(), source)
        request, cursor, reason = decide(last, now, period, grace, context.cursor)
        if not request:
            return dg.SensorResult(skip_reason=reason, cursor=cursor)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"catchup:{json.loads(cursor)['for']}:{json.loads(cursor)['at']}",
                    tags={TRIGGER_TAG: CATCHUP_TRIGGER},
                )
            ],
            cursor=cursor,
        )

    return _sensor
