"""The user_info stream: one user/info request, one row, its daily history snapshot."""

from __future__ import annotations

from datetime import datetime, timezone

from tiktok_organic_dagster.lake import DeltaCatalog, WriteResult
from tiktok_organic_dagster.names import ACCOUNT_COLUMN, full_sync_app_id
from tiktok_organic_dagster.settings import SourceSettings, SyncType
from tiktok_organic_dagster.sync.common import (
    StreamResult,
    commit_info,
    partition_of,
    scoped,
    table_uris,
    validate,
)
from tiktok_organic_dagster.sync.memory import use_system_pool
from tiktok_organic_dagster.sync.records import history_rows, records_to_table
from tiktok_organic_dagster.tiktok import TikTokClient
from tiktok_organic_dagster.tiktok.streams import USER_COUNTERS, USER_FIELDS


def sync_user_info(
    client: TikTokClient,
    catalog: DeltaCatalog,
    source: SourceSettings,
    *,
    full_refresh: bool,
    run_id: str,
    label: str,
    now: datetime | None = None,
    write_table: bool = True,
    write_history: bool = True,
    account: str | None = None,
) -> StreamResult:
    """``account``: one account of a multi-account source; its rows carry it and go to its partition."""
    use_system_pool()
    cfg = source.streams["user_info"]
    now = now or datetime.now(timezone.utc)
    uri, history_uri = table_uris(catalog, source, "user_info")
    fields = list(dict.fromkeys([*USER_FIELDS, *cfg.extra_fields]))
    user = scoped("user_info", lambda: client.user_info(fields))
    extra: dict[str, object] = {"_synced_at": now}
    if account is not None:
        extra[ACCOUNT_COLUMN] = account
    part = partition_of(account)
    batch = records_to_table([user], USER_FIELDS, extra)
    checks = validate(label, batch, "open_id", USER_COUNTERS)
    info = commit_info(run_id, source.name, "user_info", account)
    incremental = cfg.sync_type is SyncType.INCREMENTAL and not full_refresh and catalog.exists(uri)
    write: WriteResult | None = None
    if write_table and incremental:
        write = catalog.merge(uri, batch, key=["open_id"], commit_info=info, partition=part)
    elif write_table:
        write = catalog.overwrite(uri, batch, key=["open_id"], commit_info=info, app_id=full_sync_app_id(account),
                                  partition=part)
    history = catalog.snapshot_merge(
        history_uri, history_rows(batch, "open_id", USER_COUNTERS, now), key=["open_id"], commit_info=info,
        partition=part) if write_history else None
    sync_type = SyncType.INCREMENTAL if incremental else SyncType.FULL_TABLE
    return StreamResult(sync_type, write, history, batch, checks)
