"""Check steps have readable names, and the column-schema check says what changed."""

from __future__ import annotations

import re

import dagster as dg

from tiktok_organic_dagster.defs.checks import schema_change
from tiktok_organic_dagster.defs.definitions import build_definitions
from tiktok_organic_dagster.names import full_sync_job_name, schema_check_op_name, sync_job_name, sync_op_name
from tiktok_organic_dagster.settings import load_settings


def test_every_step_of_the_jobs_has_a_readable_name():
    defs = build_definitions(load_settings({}))
    for job in (sync_job_name("tiktok_organic"), full_sync_job_name("tiktok_organic")):
        steps = {node.name for node in defs.resolve_job_def(job).graph.nodes}
        assert not [s for s in steps if re.fullmatch(r"asset_check_[0-9a-f]{8}", s)], steps
        assert schema_check_op_name("tiktok_organic") == "tiktok_organic__column_schema_change"
        assert steps == {sync_op_name("tiktok_organic"), "tiktok_organic__column_schema_change",
                         "raw__tiktok_organic__videos_history_lifetime_counters_never_decrease"}
    checks = {(k.asset_key.to_user_string(), k.name) for k in defs.get_repository_def().asset_graph.asset_check_keys}
    assert {("raw/tiktok_organic/videos", "column_schema_change"),
            ("raw/tiktok_organic/user_info", "column_schema_change")} <= checks  # same check keys as before


def _materialize(instance: dg.DagsterInstance, key: dg.AssetKey, columns: dict[str, str] | None) -> None:
    metadata = {} if columns is None else {
        "dagster/column_schema": dg.TableSchema([dg.TableColumn(n, t) for n, t in columns.items()])}
    instance.report_runless_asset_event(dg.AssetMaterialization(key, metadata=metadata))


def test_schema_change_check_names_added_removed_and_retyped_columns():
    key = dg.AssetKey(["raw", "t", "videos"])
    with dg.instance_for_test() as instance:
        _materialize(instance, key, {"id": "string", "views": "int64", "title": "string"})
        assert schema_change(instance, key) == (True, "The asset has been materialized fewer than 2 times")
        _materialize(instance, key, {"id": "string", "views": "int64", "title": "string"})
        assert schema_change(instance, key) == (
            True, "No changes to column schema between previous and latest materialization")
        _materialize(instance, key, {"id": "string", "views": "double", "is_aigc": "bool"})
        assert schema_change(instance, key) == (
            False, "Column schema changed between previous and latest materialization.\n\nAdded columns: is_aigc"
                   "\n\nRemoved columns: title\n\nColumn type changes: views: int64 -> double")
        _materialize(instance, key, None)
        assert schema_change(instance, key) == (False, "Latest materialization has no column schema metadata")
