"""Asset checks: the sync's blocking checks as Dagster check specs and results, and the history check.

The blocking checks run on the batch before the commit (see ``sync.checks``), so they are declared on the
sync's multi-asset and reported from its results; the monotonic check reads the history table afterwards.
"""

from collections.abc import Iterable, Sequence

import dagster as dg

from tiktok_organic_dagster.defs.resources import DeltaCatalogResource
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
    return [dg.AssetCheckResult(asset_key=asset_key, check_name=r.name, passed=r.passed, metadata=r.metadata)
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
