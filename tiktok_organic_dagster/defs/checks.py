"""Asset checks: the sync's blocking checks as Dagster check specs and results, the history check, and the
column-schema check.

The blocking checks run on the batch before the commit (see ``sync.checks``), so they are declared on the
sync's multi-asset and reported from its results; the monotonic check reads the history table afterwards.
The schema check is ours rather than ``dg.build_column_schema_change_checks``, whose step is named by a hash
(``asset_check_3caf10c4``) with no public way to rename it; it keeps that factory's check name and messages.
"""

from collections.abc import Iterable, Iterator, Sequence

import dagster as dg

from tiktok_organic_dagster.defs.metadata import COLUMN_SCHEMA
from tiktok_organic_dagster.defs.resources import DeltaCatalogResource
from tiktok_organic_dagster.names import schema_check_op_name
from tiktok_organic_dagster.sync.checks import (
    MONOTONIC_CHECK,
    NON_NEGATIVE_CHECK,
    UNIQUE_KEY_CHECK,
    CheckResult,
    decreased_counters,
)


def blocking_check_specs(asset_key: dg.AssetKey, key: str, counters: Sequence[str]) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            UNIQUE_KEY_CHECK,
            asset=asset_key,
            blocking=True,
            description=f"`{key}` is present and unique in every synced batch; checked before the commit.",
        ),
        dg.AssetCheckSpec(
            NON_NEGATIVE_CHECK,
            asset=asset_key,
            blocking=True,
            description=f"Counters {', '.join(counters)} are never negative; checked before the commit.",
        ),
    ]


def check_results(asset_key: dg.AssetKey, results: Iterable[CheckResult],
                  selected: frozenset[dg.AssetCheckKey] | set[dg.AssetCheckKey]) -> list[dg.AssetCheckResult]:
    """The selected ones of the sync's plain check results, as Dagster check results."""
    return [dg.AssetCheckResult(asset_key=asset_key, check_name=r.name, passed=r.passed, metadata=r.metadata,
                                severity=dg.AssetCheckSeverity.WARN if r.warn_only else dg.AssetCheckSeverity.ERROR)
            for r in results if dg.AssetCheckKey(asset_key, r.name) in selected]


def build_monotonic_check(
    history_key: dg.AssetKey, table_path: tuple[str, str, str], catalog_key: str, key: str, counters: Sequence[str]
) -> dg.AssetChecksDefinition:
    """A lifetime counter such as views only grows; a drop (TikTok removing fake views, a data bug) is worth
    a warning, not a failed run."""

    @dg.asset_check(
        asset=history_key,
        name=MONOTONIC_CHECK,
        description=f"Lifetime counters ({', '.join(counters)}) never go down between the last two daily "
        "snapshots (warns).",
        required_resource_keys={catalog_key},
        blocking=False,
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        resource: DeltaCatalogResource = getattr(context.resources, catalog_key)
        catalog = resource.get_catalog()
        uri = catalog.table_uri(*table_path)
        if not catalog.exists(uri):
            return dg.AssetCheckResult(passed=True, metadata={"note": "history table not created yet"})
        drops = decreased_counters(catalog, uri, key, counters)
        return dg.AssetCheckResult(
            passed=not any(drops.values()),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={f"decreased_{c}": n for c, n in drops.items()},
        )

    return _check


SCHEMA_CHECK = "column_schema_change"  # the name dagster's factory gives it, so earlier results stay attached


def _column_schema(event: dg.AssetMaterialization | None) -> dg.TableSchema | None:
    value = (event.metadata if event is not None else {}).get(COLUMN_SCHEMA)  # what the sync reports
    return value.schema if isinstance(value, dg.TableSchemaMetadataValue) else None


def schema_change(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> tuple[bool, str]:
    """Compare ``dagster/column_schema`` of the asset's two latest materializations."""
    records = instance.fetch_materializations(asset_key, limit=2).records
    if len(records) < 2:
        return True, "The asset has been materialized fewer than 2 times"
    new, old = (_column_schema(r.asset_materialization) for r in records)
    if new is None or old is None:
        return False, f"{'Latest' if new is None else 'Previous'} materialization has no column schema metadata"
    before, after = ({c.name: c.type for c in schema.columns} for schema in (old, new))
    changes = [("Added columns", [c for c in after if c not in before]),
               ("Removed columns", [c for c in before if c not in after]),
               ("Column type changes", [f"{c}: {before[c]} -> {t}" for c, t in after.items()
                                        if c in before and before[c] != t])]
    if not any(names for _, names in changes):
        return True, "No changes to column schema between previous and latest materialization"
    return False, "Column schema changed between previous and latest materialization." + "".join(
        f"\n\n{what}: {', '.join(names)}" for what, names in changes if names)


def build_schema_change_check(source: str, asset_keys: Sequence[dg.AssetKey]) -> dg.AssetChecksDefinition:
    """One step (``<source>__column_schema_change``) checking each table's columns against its previous
    materialization (warns: a new API field is expected schema evolution, still worth a look)."""

    @dg.multi_asset_check(
        name=schema_check_op_name(source),
        specs=[dg.AssetCheckSpec(SCHEMA_CHECK, asset=key, description="Checks whether the column schema changed "
                                 "between the asset's two most recent materializations (warns).")
               for key in asset_keys],
        can_subset=True,
    )
    def _checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        for check_key in context.selected_asset_check_keys:
            passed, description = schema_change(context.instance, check_key.asset_key)
            yield dg.AssetCheckResult(asset_key=check_key.asset_key, check_name=check_key.name, passed=passed,
                                      description=description, severity=dg.AssetCheckSeverity.WARN)

    return _checks
