"""The Dagster assets of one source: ``user_info`` and ``videos`` with their daily history tables.

One subsettable multi-asset per source holds every stream's table and history (a table and its history come
from the same API reads, so the history costs no extra request). Asset keys are the table's place in the
catalog, ``[layer, folder, table]``, unless a translator renames them (see ``translation``).
"""

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pydantic import Field

from tiktok_organic_dagster.defs.checks import blocking_check_specs, check_results
from tiktok_organic_dagster.defs.metadata import (
    api_metadata,
    history_metadata,
    maintenance_outcome,
    stream_metadata,
)
from tiktok_organic_dagster.defs.resources import DeltaCatalogResource, TikTokClientResource
from tiktok_organic_dagster.defs.translation import TableAsset, Translator
from tiktok_organic_dagster.lake import DeltaCatalog
from tiktok_organic_dagster.names import (
    ACCOUNT_COLUMN,
    OWNERS,
    SOURCE_TAG,
    SYNC_KIND_TAG,
    accounts_partitions_name,
    catalog_resource_key,
    client_resource_key,
    pool_name,
    sync_op_name,
)
from tiktok_organic_dagster.settings import SourceSettings, cron_period
from tiktok_organic_dagster.sync import BatchCheckFailed, StreamResult, sync_user_info, sync_videos
from tiktok_organic_dagster.sync.checks import TOKEN_EXPIRY_CHECK, TOKEN_EXPIRY_WARN_DAYS, token_expiry
from tiktok_organic_dagster.tiktok import TikTokClient
from tiktok_organic_dagster.tiktok.streams import STREAM_NAMES, STREAMS


class SyncConfig(dg.Config):
    """Run config, editable in the launchpad or with ``--config-json``."""

    full_refresh: bool = Field(
        default=False, description="Force FULL_TABLE for this run: page everything and overwrite."
    )
    refresh_all_counters: bool | None = Field(
        default=None,
        description="videos INCREMENTAL only: also refresh counters of every known video older than the "
        "look-back window via video/query. Unset = the source setting.",
    )


def freshness_policy(source: SourceSettings) -> dg.FreshnessPolicy:
    """Fresh enough when updated within one trigger period plus a quarter of it (a slow or retried run)."""
    period = cron_period(source.trigger.cron, source.trigger.timezone)
    return dg.FreshnessPolicy.time_window(fail_window=period * 1.25, warn_window=period * 1.1)


def _start_maintenance(pool: ThreadPoolExecutor, catalog: DeltaCatalog, result: StreamResult,
                       account: str | None) -> dict[str, Future]:
    """Retention, checkpoint, vacuum after the commits, in the background: delta-rs releases the GIL, so the
    tables are maintained side by side and while Dagster records the other stream's events. An account's
    run compacts only its own partition (no conflict with the other accounts' commits)."""
    part = (ACCOUNT_COLUMN, account) if account is not None else None
    return {w.uri: pool.submit(catalog.maintain, w.uri, partition=part)
            for w in (result.write, result.history) if w is not None}


StreamSpecs = tuple[dg.AssetSpec, dg.AssetSpec]  # a stream's table and its history


def _default_specs(source: SourceSettings, stream: str) -> StreamSpecs:
    spec = STREAMS[stream]
    sync_type = source.streams[stream].sync_type.value
    freshness = freshness_policy(source)

    def asset_spec(key: list[str], description: str, metadata: dict[str, str]) -> dg.AssetSpec:
        return dg.AssetSpec(key, description=description, metadata=metadata, group_name=source.name,
                            kinds={"tiktok", "deltalake"}, owners=list(OWNERS),
                            tags={"source": source.name, "stream": stream}, freshness_policy=freshness)

    return (
        asset_spec(source.asset_key_path(stream),
                   f"{spec.description}\n\nSource `{source.name}`: {source.description}. Sync: {sync_type}.",
                   {"sync_type": sync_type}),
        asset_spec(source.asset_key_path(stream, "_history"), spec.history_description, {}),
    )


def source_specs(source: SourceSettings, translate: Translator | None = None) -> dict[str, StreamSpecs]:
    """Each selected stream's (table, history) specs in stream order, renamed by ``translate`` if given. Two
    assets may not end up with one key (a key template without ``{{ table }}``)."""
    out: dict[str, StreamSpecs] = {}
    owner: dict[dg.AssetKey, str] = {}  # translated key -> the table it names
    for stream in (s for s in STREAM_NAMES if s in source.streams):
        cfg = source.streams[stream]
        pair = _default_specs(source, stream)
        if translate is not None:
            pair = (translate(pair[0], TableAsset(source.name, stream, source.table_name(stream), cfg.layer,
                                                  cfg.folder, history=False)),
                    translate(pair[1], TableAsset(source.name, stream, source.table_name(stream) + "_history",
                                                  cfg.layer, cfg.folder, history=True)))
        for spec, suffix in zip(pair, ("", "_history"), strict=True):
            table = "/".join(source.asset_key_path(stream, suffix))
            if spec.key in owner:
                raise ValueError(f"translation.key gives {spec.key.to_user_string()} to both {owner[spec.key]} and "
                                 f"{table}: put {{{{ table }}}} in the key so each table gets its own")
            owner[spec.key] = table
        out[stream] = pair
    return out


@dataclass
class _StreamPart:
    """One stream's share of the run: which of its tables are selected, and what its sync produced."""

    stream: str
    table_key: dg.AssetKey
    history_key: dg.AssetKey
    write_table: bool
    write_history: bool
    result: StreamResult | None = None
    table_meta: dict[str, Any] = field(default_factory=dict)
    history_meta: dict[str, Any] = field(default_factory=dict)
    maintenance: dict[str, Future] = field(default_factory=dict)
    error: Exception | None = None


def _run_part(source: SourceSettings, part: _StreamPart, client: TikTokClient, catalog: DeltaCatalog,
              config: SyncConfig, run_id: str, maintenance: ThreadPoolExecutor, account: str | None) -> None:
    """Sync and describe one stream, and start its tables' maintenance. An error is kept, not raised, so
    the other stream finishes and lands; the op reports it afterwards."""
    try:
        label = part.table_key.to_user_string()
        result: StreamResult
        if part.stream == "user_info":
            result = sync_user_info(client, catalog, source, full_refresh=config.full_refresh, run_id=run_id,
                                    label=label, write_table=part.write_table, write_history=part.write_history,
                                    account=account)
        else:
            refresh = config.refresh_all_counters
            if refresh is None:
                refresh = source.streams["videos"].refresh_all_counters
            result = sync_videos(client, catalog, source, full_refresh=config.full_refresh, run_id=run_id,
                                 label=label, write_table=part.write_table, write_history=part.write_history,
                                 refresh_all_counters=refresh, account=account)
        if result.write is not None:
            part.table_meta = stream_metadata(result, catalog, part.stream, account)
        if result.history is not None:
            part.history_meta = history_metadata(result, catalog, account)
        part.maintenance = _start_maintenance(maintenance, catalog, result, account)
        part.result = result
    except Exception as exc:  # noqa: BLE001 - reported by the op once every stream has finished
        part.error = exc


def _events(part: _StreamPart, api: dict[str, int], days_left: float | None, maintained: dict[str, Any],
            checks_selected: frozenset[dg.AssetCheckKey] | set[dg.AssetCheckKey], who: str) -> Iterator[object]:
    result = part.result
    assert result is not None
    checks = check_results(part.table_key, [*result.checks, token_expiry(days_left, who)], checks_selected)
    if part.write_table:
        meta = {**part.table_meta, **api, **maintained}
        if days_left is not None:
            meta["refresh_token_days_left"] = round(days_left, 1)
        yield dg.MaterializeResult(asset_key=part.table_key, metadata=meta, check_results=checks)
    else:
        yield from checks
    if part.write_history:
        meta = dict(part.history_meta)
        if not part.write_table:
            meta.update({**api, **maintained})
        yield dg.MaterializeResult(asset_key=part.history_key, metadata=meta)


def _failure(failed: list[_StreamPart], who: str | None) -> Exception:
    """One failed stream: its own error (class and message intact). Several: one Failure naming each.
    ``who``: the account of a multi-account source, named first (its partition failed, not the others)."""
    first = failed[0].error
    assert first is not None
    if isinstance(first, BatchCheckFailed) and len(failed) == 1:
        return dg.Failure(f"{who}: {first}" if who else str(first), allow_retries=False)
    if len(failed) == 1 and who is None:
        return first
    text = "; ".join(f"stream '{p.stream}' failed: {type(p.error).__name__}: {p.error}" for p in failed)
    return dg.Failure(f"{who}: {text}" if who else text)


def build_source_asset(source: SourceSettings, specs_by_stream: dict[str, StreamSpecs] | None = None
                       ) -> dg.AssetsDefinition:
    """All streams of a source in one subsettable multi-asset (specs: ``source_specs``, the defaults if None).

    One op, not one per stream: the streams call different endpoints with separate rate budgets, so they
    run side by side (user_info's request and writes overlap video paging), and a daily run pays Dagster's
    per-step cost once. Selecting a subset writes only the selected tables; a stream runs if either of its
    tables is selected."""
    ck, dk = client_resource_key(source.name), catalog_resource_key(source.name)
    specs: list[dg.AssetSpec] = []
    check_specs: list[dg.AssetCheckSpec] = []
    keys: dict[str, tuple[dg.AssetKey, dg.AssetKey]] = {}
    for stream, (table_spec, history_spec) in (specs_by_stream or source_specs(source)).items():
        specs += [table_spec, history_spec]
        check_specs += blocking_check_specs(table_spec.key, STREAMS[stream].key, STREAMS[stream].counters)
        check_specs.append(dg.AssetCheckSpec(
            TOKEN_EXPIRY_CHECK, asset=table_spec.key, description=f"Warns when the refresh token expires within "
            f"{TOKEN_EXPIRY_WARN_DAYS} days (TikTok does not extend it: re-authorize the account)."))
        keys[stream] = (table_spec.key, history_spec.key)
    partitions = dg.DynamicPartitionsDefinition(name=accounts_partitions_name(source.name)) \
        if source.partitioned else None

    @dg.multi_asset(name=sync_op_name(source.name), specs=specs, check_specs=check_specs, can_subset=True,
                    required_resource_keys={ck, dk}, pool=pool_name(source.name), op_tags={SOURCE_TAG: source.name},
                    partitions_def=partitions)
    def _sync(context: dg.AssetExecutionContext, config: SyncConfig) -> Iterator[object]:
        client_resource: TikTokClientResource = getattr(context.resources, ck)
        catalog_resource: DeltaCatalogResource = getattr(context.resources, dk)
        client, catalog = client_resource.get_client(), catalog_resource.get_catalog()
        account = client_resource.account_name
        if context.run.tags.get(SYNC_KIND_TAG) == "full" and not config.full_refresh:
            # the full-sync job's own config does not reach a partitioned run launched with only a partition
            # tag (`dagster job execute --tags`); its tag does
            config = SyncConfig(full_refresh=True, refresh_all_counters=config.refresh_all_counters)
        selected = context.selected_asset_keys
        parts = [_StreamPart(s, t, h, t in selected, h in selected) for s, (t, h) in keys.items()
                 if t in selected or h in selected]
        maintenance = ThreadPoolExecutor(max_workers=2 * len(parts), thread_name_prefix="delta-maintenance")
        try:
            # the last part (videos, the long one) runs on this thread, the others beside it
            with ThreadPoolExecutor(max_workers=max(len(parts) - 1, 1)) as pool:
                for part in parts[:-1]:
                    pool.submit(_run_part, source, part, client, catalog, config, context.run_id, maintenance,
                                account)
                _run_part(source, parts[-1], client, catalog, config, context.run_id, maintenance, account)
            who = f"account '{account}' of TikTok source '{source.name}'" if account else \
                f"TikTok source '{source.name}'"
            yield from _report(context, client, parts, who, account is not None)
        finally:
            maintenance.shutdown(wait=True)

    return _sync


def _report(context: dg.AssetExecutionContext, client: TikTokClient, parts: list[_StreamPart], who: str,
            name_failures: bool) -> Iterator[object]:
    """Materializations and check results of the streams that landed, then the failure of those that did
    not. Stream by stream, so a stream's maintenance can finish while Dagster records the one before."""
    stats, days_left = client.stats, client.refresh_token_days_left()
    checks_selected = context.selected_asset_check_keys
    failed = []
    for i, part in enumerate(parts):
        if part.error is None:
            api = api_metadata(stats, part.stream, shared=i == 0)
            maintained = maintenance_outcome(context.log, part.maintenance)
            yield from _events(part, api, days_left, maintained, checks_selected, who)
            continue
        failed.append(part)
        if isinstance(part.error, BatchCheckFailed):
            yield from check_results(part.table_key, part.error.results, checks_selected)
    if failed:
        raise _failure(failed, who if name_failures else None) from failed[0].error
