"""DeltaCatalog against real Delta tables on local disk (tmp_path)."""

from __future__ import annotations

import json
import os
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from tiktok_organic_dagster.defs.resources import DeltaCatalogResource
from tiktok_organic_dagster.lake import (
    CatalogConfigError,
    CommitConflictError,
    DeltaCatalog,
    DeltaCatalogError,
    VersionNotAvailableError,
)
from tiktok_organic_dagster.lake.maintenance import interval_seconds
from tiktok_organic_dagster.names import COMMIT_PREFIX

UTC = timezone.utc
T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 2, tzinfo=UTC)


def videos(ids: list[str], views: list[int], synced: datetime = T0, **extra: list) -> pa.Table:
    n = len(ids)
    cols = {
        "id": pa.array(ids, pa.string()),
        "create_time": pa.array([T0 - timedelta(days=int(i) % 50) for i in ids], pa.timestamp("us", "UTC")),
        "title": pa.array([f"title {i}" for i in ids], pa.string()),
        "view_count": pa.array(views, pa.int64()),
        "_synced_at": pa.array([synced] * n, pa.timestamp("us", "UTC")),
    }
    cols.update({k: pa.array(v) for k, v in extra.items()})
    return pa.table(cols)


def rows_by_id(table: pa.Table) -> dict[str, dict]:
    return {r["id"]: r for r in table.to_pylist()}


def age_versions(uri: str, versions: list[int], days: float) -> None:
    """Pretend commits ``versions`` happened ``days`` earlier: shift the timestamps delta-rs reads
    (commitInfo, remove.deletionTimestamp, add.modificationTime) and the mtimes of log and data files."""
    shift_ms = int(days * 86400 * 1000)
    for v in versions:
        log = Path(uri, "_delta_log", f"{v:020d}.json")
        actions = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        for action in actions:
            if "commitInfo" in action:
                action["commitInfo"]["timestamp"] -= shift_ms
            if "remove" in action and "deletionTimestamp" in action["remove"]:
                action["remove"]["deletionTimestamp"] -= shift_ms
            if "add" in action:
                action["add"]["modificationTime"] -= shift_ms
                _backdate(Path(uri, action["add"]["path"]), days)
        log.write_text("\n".join(json.dumps(a) for a in actions) + "\n")
        _backdate(log, days)


def _backdate(path: Path, days: float) -> None:
    stamp = path.stat().st_mtime - days * 86400
    os.utime(path, (stamp, stamp))


@pytest.fixture
def catalog(tmp_path: Path) -> DeltaCatalog:
    return DeltaCatalog(root_uri=str(tmp_path / "lake"), delta_log_retention_days=2,
                        commit_retry_backoff_seconds=0.01)


@pytest.fixture
def uri(catalog: DeltaCatalog) -> str:
    return catalog.table_uri("bronze", "tiktok", "videos", prefix="acct1_")


# ------------------------------------------------------------------------------ layout and settings
def test_table_uri_layout_and_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert DeltaCatalog(root_uri=str(tmp_path)).table_uri("silver", "tt", "videos", "p_") == \
        f"{tmp_path}/silver/tt/p_videos"
    monkeypatch.setenv("TIKTOK_DELTA_ROOT", "s3://bucket/lake/")
    resource = DeltaCatalogResource()  # the Dagster resource reads the variable at run time
    assert resource.get_catalog().table_uri("bronze", "tt", "user_info") == "s3://bucket/lake/bronze/tt/user_info"
    monkeypatch.delenv("TIKTOK_DELTA_ROOT")
    assert resource.get_catalog().resolved_root() == os.path.abspath("data/lakehouse")
    monkeypatch.chdir(tmp_path)
    assert DeltaCatalog().resolved_root() == str(tmp_path / "data" / "lakehouse")
    with pytest.raises(CatalogConfigError, match="root_uri"):
        DeltaCatalog(root_uri="http://example.com/lake").resolved_root()


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", "a\\b", "a b", "", "-x", "x.y"])
@pytest.mark.parametrize("setting", ["layer", "folder", "table_name", "table_prefix"])
def test_unsafe_names_are_refused_naming_the_setting(catalog: DeltaCatalog, bad: str, setting: str) -> None:
    parts = {"layer": "bronze", "folder": "tiktok", "table_name": "videos", "table_prefix": "p_"}
    if setting == "table_prefix" and bad == "":
        return  # an empty prefix is allowed
    parts[setting] = bad
    with pytest.raises(CatalogConfigError, match=f"^{setting} .* is not a valid name"):
        catalog.table_uri(parts["layer"], parts["folder"], parts["table_name"], parts["table_prefix"])


def test_invalid_settings_give_clear_errors(uri: str) -> None:
    with pytest.raises(ValueError, match="delta_log_retention_days must be an integer >= 1"):
        DeltaCatalog(delta_log_retention_days=0)
    with pytest.raises(ValueError, match="storage_options key 'aws_secret_access_key' looks like a cred"):
        DeltaCatalog(storage_options={"aws_secret_access_key": "x"})
    with pytest.raises(ValueError, match="commit_retry_attempts"):
        DeltaCatalog(commit_retry_attempts=0)
    with pytest.raises(ValueError, match="malformed"):
        interval_seconds("30 days")  # delta-rs would silently ignore this value
    assert interval_seconds("interval 2 days") == 2 * 86400


def test_storage_options_come_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    cat = DeltaCatalog(storage_options={"aws_conditional_put": "etag"})
    s3 = cat.storage_options_for("s3://b/x")
    assert s3["aws_secret_access_key"] == "from-env" and s3["aws_region"] == "eu-west-1"
    assert s3["aws_conditional_put"] == "etag" and "azure_storage_account_name" not in s3
    assert cat.storage_options_for("az://c/x")["azure_storage_account_name"] == "acct"
    assert cat.storage_options_for("/tmp/local") is None


# ---------------------------------------------------------------------------------------- writes
def test_overwrite_replaces_rows_and_counts_keys(catalog: DeltaCatalog, uri: str) -> None:
    first = catalog.overwrite(uri, videos(["1", "2", "3"], [10, 20, 30]), key=["id"], commit_info={})
    assert (first.version, first.inserted, first.updated, first.deleted) == (0, 3, 0, 0)
    second = catalog.overwrite(uri, videos(["2", "3", "4"], [21, 30, 40]), key=["id"], commit_info={})
    assert (second.version, second.inserted, second.updated, second.deleted) == (1, 1, 2, 1)
    data = rows_by_id(catalog.read(uri))
    assert sorted(data) == ["2", "3", "4"] and data["2"]["view_count"] == 21
    assert catalog.read(uri, version=0).num_rows == 3
    assert catalog.history(uri)[0]["metadata"]["lake.deleted"] == 1


def test_overwrite_streams_a_reader_and_evolves_schema(catalog: DeltaCatalog, uri: str) -> None:
    catalog.overwrite(uri, videos(["1", "2"], [1, 2]), key=["id"], commit_info={})
    new = videos([str(i) for i in range(2, 12)], list(range(10)), share_count=list(range(10)))
    consumed: list[int] = []

    def batches():
        for batch in new.to_batches(max_chunksize=3):
            consumed.append(batch.num_rows)
            yield batch

    result = catalog.overwrite(uri, pa.RecordBatchReader.from_batches(new.schema, batches()),
                               key=["id"], commit_info={"lake.run_id": "r-stream"})
    assert consumed == [3, 3, 3, 1]
    assert (result.rows_written, result.inserted, result.updated, result.deleted) == (10, 9, 1, 1)
    out = catalog.read(uri)
    assert out.num_rows == 10 and "share_count" in out.column_names
    assert out.schema.field("view_count").type == pa.int64()
    assert out.schema.field("create_time").type == pa.timestamp("us", "UTC")
    assert catalog.history(uri, limit=1)[0]["run_id"] == "r-stream"
    assert catalog.row_count(uri) == 10 and catalog.row_count(uri, version=0) == 2
    assert catalog.schema(uri).names == out.column_names


def test_failing_stream_leaves_table_at_previous_version(catalog: DeltaCatalog, uri: str) -> None:
    catalog.overwrite(uri, videos(["1", "2"], [1, 2]), key=["id"], commit_info={})
    big = videos([str(i) for i in range(100)], list(range(100)))

    def batches():
        yield from big.to_batches(max_chunksize=30)[:2]
        raise ConnectionError("TikTok API went away mid-pagination")

    with pytest.raises(ConnectionError, match="mid-pagination"):
        catalog.overwrite(uri, pa.RecordBatchReader.from_batches(big.schema, batches()),
                          key=["id"], commit_info={})
    assert catalog.version(uri) == 0
    assert sorted(rows_by_id(catalog.read(uri))) == ["1", "2"]


def test_streamed_overwrite_conflict_is_reported_and_loses_nothing(catalog: DeltaCatalog, uri: str) -> None:
    catalog.overwrite(uri, videos(["1", "2"], [1, 2]), key=["id"], commit_info={})
    new = videos(["1", "5"], [1, 5])

    def batches():
        yield new.to_batches()[0].slice(0, 1)
        # another writer rewrites the file this overwrite is replacing, while the stream is open
        other = threading.Thread(target=lambda: catalog.merge(uri, videos(["1"], [10]), key=["id"],
                                                                commit_info={}))
        other.start()
        other.join()
        yield new.to_batches()[0].slice(1)

    with pytest.raises(CommitConflictError, match="streamed overwrite cannot be replayed"):
        catalog.overwrite(uri, pa.RecordBatchReader.from_batches(new.schema, batches()), key=["id"],
                          commit_info={})
    assert catalog.version(uri) == 1  # the concurrent merge won and is intact
    assert {k: r["view_count"] for k, r in rows_by_id(catalog.read(uri)).items()} == {"1": 10, "2": 2}


def test_commit_conflicts_are_retried_with_a_bound(tmp_path: Path) -> None:
    cat = DeltaCatalog(root_uri=str(tmp_path), commit_retry_attempts=3, commit_retry_backoff_seconds=0.001)
    uri = cat.table_uri("bronze", "tt", "videos")
    cat.overwrite(uri, videos(["1", "2"], [1, 2]), key=["id"], commit_info={})
    calls: list[int] = []

    def stale_update(conflicts: int) -> int:
        calls.append(1)
        stale = DeltaTable(uri)  # loaded before the concurrent writer below commits
        if len(calls) <= conflicts:
            cat.merge(uri, videos(["1"], [100 + len(calls)]), key=["id"], commit_info={})
        stale.merge(videos(["2"], [20 + len(calls)]), "t.id = s.id", source_alias="s", target_alias="t"
                    ).when_matched_update_all().execute()
        return stale.version()

    (version, attempts) = cat._with_retry("merge", uri, lambda: stale_update(conflicts=2))
    assert attempts == 3 and len(calls) == 3 and version == 3
    calls.clear()
    with pytest.raises(CommitConflictError, match="lost the commit race 3 time.*Dagster pool"):
        cat._with_retry("merge", uri, lambda: stale_update(conflicts=5))
    assert len(calls) == 3


def test_merge_inserts_updates_and_leaves_unchanged_rows_alone(catalog: DeltaCatalog, uri: str) -> None:
    catalog.overwrite(uri, videos(["1", "2", "3"], [10, 20, 30]), key=["id"], commit_info={})
    before_files = set(DeltaTable(uri).file_uris())
    result = catalog.merge(uri, videos(["2", "3", "4"], [25, 30, 40], synced=T1), key=["id"], commit_info={})
    assert (result.version, result.inserted, result.updated, result.unchanged) == (1, 1, 1, 1)
    data = rows_by_id(catalog.read(uri))
    assert data["1"]["view_count"] == 10 and data["2"]["view_count"] == 25 and data["4"]["view_count"] == 40
    assert data["3"]["_synced_at"] == T0  # unchanged payload: bookkeeping columns do not force a rewrite
    assert data["2"]["_synced_at"] == T1
    assert DeltaTable(uri).file_uris() != before_files
    again = catalog.merge(uri, videos(["2", "3", "4"], [25, 30, 40], synced=T1), key=["id"], commit_info={})
    assert (again.version, again.inserted, again.updated, again.unchanged) == (1, 0, 0, 3)  # no new commit
    forced = catalog.merge(uri, videos(["3"], [30], synced=T1), key=["id"], commit_info={},
                           update_only_if_changed=False)
    assert (forced.version, forced.updated) == (2, 1)
    assert rows_by_id(catalog.read(uri))["3"]["_synced_at"] == T1


def test_merge_rewrites_files_in_bounded_row_groups(catalog: DeltaCatalog, uri: str) -> None:
    """delta-rs would rewrite a merged file as one row group; a later read would then hold the whole table."""
    import pyarrow.parquet as pq

    from tiktok_organic_dagster.lake.stream_writer import ROWS_PER_GROUP

    n = 2 * ROWS_PER_GROUP + 500
    ids = [str(i) for i in range(n)]
    catalog.overwrite(uri, videos(ids, list(range(n))), key=["id"], commit_info={})
    catalog.merge(uri, videos(ids[:50] + [str(n)], [1] * 51, synced=T1), key=["id"], commit_info={})
    assert catalog.row_count(uri) == n + 1
    groups = [pq.ParquetFile(f).metadata.row_group(i).num_rows
              for f in DeltaTable(uri).file_uris() for i in range(pq.ParquetFile(f).metadata.num_row_groups)]
    assert sum(groups) == n + 1 and max(groups) <= ROWS_PER_GROUP
    # and still compressed as delta-rs writes by default (writer properties without a codec write none)
    assert {pq.ParquetFile(f).metadata.row_group(0).column(0).compression
            for f in DeltaTable(uri).file_uris()} == {"SNAPPY"}


def test_streamed_overwrite_splits_by_arrival_and_merge_rewrites_only_the_newest_file(
        catalog: DeltaCatalog, uri: str) -> None:
    """Pages arrive newest first, so each file of a large full sync covers a create_time range; a merge of the
    recent window (create_time >= its oldest) then rewrites only the newest file, whatever the account size."""
    from tiktok_organic_dagster.lake.stream_writer import ROWS_PER_FILE

    n = 3 * ROWS_PER_FILE + 100
    created = pa.array([T0 - timedelta(minutes=i) for i in range(n)], pa.timestamp("us", "UTC"))
    created = pc_fill(created, n - 1)  # the oldest stored video lacks create_time: it must still match
    table = pa.table({"id": pa.array([str(i) for i in range(n)]), "create_time": created,
                      "view_count": pa.array(range(n), pa.int64()),
                      "_synced_at": pa.array([T0] * n, pa.timestamp("us", "UTC"))})
    catalog.overwrite(uri, pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=20)),
                      key=["id"], commit_info={})
    files = set(DeltaTable(uri).file_uris())
    assert len(files) >= 3  # split at row-group boundaries once a file holds ROWS_PER_FILE rows
    window = table.slice(0, 30).set_column(2, "view_count", pa.array([-1] * 30, pa.int64()))
    stray = table.slice(n - 1, 1).set_column(1, "create_time", pa.array([T0], pa.timestamp("us", "UTC")))
    result = catalog.merge(uri, pa.concat_tables([window, stray]), key=["id"], commit_info={},
                           stored_at_least=("create_time", T0 - timedelta(minutes=29)))
    assert (result.inserted, result.updated) == (0, 31)
    after = set(DeltaTable(uri).file_uris())
    assert len(files - after) == 2  # the newest file and the one holding the null create_time, no other
    data = rows_by_id(catalog.read(uri))
    assert len(data) == n and data["0"]["view_count"] == -1 and data[str(n - 1)]["view_count"] == n - 1


def pc_fill(values: pa.Array, null_at: int) -> pa.Array:
    items = values.to_pylist()
    items[null_at] = None
    return pa.array(items, values.type)


def test_merge_schema_evolution_keeps_values_of_missing_columns(catalog: DeltaCatalog, uri: str) -> None:
    catalog.overwrite(uri, videos(["1", "2"], [10, 20]), key=["id"], commit_info={})
    src = pa.table({"id": ["1", "3"], "view_count": pa.array([11, 30], pa.int64()),
                    "like_count": pa.array([5, 6], pa.int64())})  # no title/create_time, new like_count
    result = catalog.merge(uri, src, key=["id"], commit_info={})
    assert (result.inserted, result.updated) == (1, 1)
    data = rows_by_id(catalog.read(uri))
    assert data["1"]["title"] == "title 1" and data["1"]["like_count"] == 5 and data["1"]["view_count"] == 11
    assert data["2"]["like_count"] is None and data["3"]["title"] is None
    assert DeltaTable(uri).schema().to_arrow().field("like_count").type == pa.int64()


def test_merge_collapses_batch_duplicates_last_wins(catalog: DeltaCatalog, uri: str) -> None:
    result = catalog.merge(uri, videos(["1", "2", "1", "1"], [1, 2, 3, 4]), key=["id"], commit_info={})
    assert (result.rows_written, result.inserted) == (2, 2)  # table created by the first merge
    assert rows_by_id(catalog.read(uri))["1"]["view_count"] == 4
    again = catalog.merge(uri, videos(["2", "2"], [7, 8]), key=["id"], commit_info={})
    assert again.updated == 1 and rows_by_id(catalog.read(uri))["2"]["view_count"] == 8
    with pytest.raises(DeltaCatalogError, match="key column 'id' contains nulls"):
        catalog.merge(uri, pa.table({"id": pa.array([None], pa.string())}), key=["id"], commit_info={})
    with pytest.raises(CatalogConfigError, match="key column"):
        catalog.merge(uri, videos(["1"], [1]), key=["video_id"], commit_info={})


def test_snapshot_merge_is_idempotent_per_day(catalog: DeltaCatalog) -> None:
    uri = catalog.table_uri("bronze", "tiktok", "user_info_history")

    def snap(day: date, followers: int) -> pa.Table:
        return pa.table({"open_id": ["u1"], "snapshot_date": pa.array([day], pa.date32()),
                         "follower_count": pa.array([followers], pa.int64())})

    d1, d2 = date(2026, 1, 1), date(2026, 1, 2)
    catalog.snapshot_merge(uri, snap(d1, 100), key=["open_id"], commit_info={})
    again = catalog.snapshot_merge(uri, snap(d1, 100), key=["open_id"], commit_info={})
    assert (again.inserted, again.updated, again.unchanged, again.version) == (0, 0, 1, 0)
    later = catalog.snapshot_merge(uri, snap(d1, 105), key=["open_id"], commit_info={})
    assert later.updated == 1 and later.sync_type == "snapshot"
    catalog.snapshot_merge(uri, snap(d2, 110), key=["open_id"], commit_info={})
    rows = sorted(catalog.read(uri).to_pylist(), key=lambda r: r["snapshot_date"])
    assert [(r["snapshot_date"], r["follower_count"]) for r in rows] == [(d1, 105), (d2, 110)]
    # The merge skips snapshots older than the batch's oldest day; a batch reaching back to d1 still
    # updates d1 in place instead of adding a second d1 row.
    d3 = date(2026, 1, 3)
    mixed = pa.concat_tables([snap(d1, 107), snap(d3, 120)])
    result = catalog.snapshot_merge(uri, mixed, key=["open_id"], commit_info={})
    assert (result.inserted, result.updated) == (1, 1)
    rows = sorted(catalog.read(uri).to_pylist(), key=lambda r: r["snapshot_date"])
    assert [(r["snapshot_date"], r["follower_count"]) for r in rows] == [(d1, 107), (d2, 110), (d3, 120)]
    with pytest.raises(CatalogConfigError, match="snapshot_column 'day'"):
        catalog.snapshot_merge(uri, snap(d2, 1), key=["open_id"], snapshot_column="day", commit_info={})


def test_commit_metadata_and_last_commit_time(catalog: DeltaCatalog, uri: str) -> None:
    assert catalog.last_commit_time(uri, "full") is None
    catalog.overwrite(uri, videos(["1", "2"], [1, 2]), key=["id"],
                      commit_info={"lake.run_id": "run-full"})
    catalog.merge(uri, videos(["3"], [3]), key=["id"], commit_info={"lake.run_id": "run-inc"})
    hist = catalog.history(uri)
    assert [(h["version"], h["sync_type"], h["run_id"]) for h in hist] == [
        (1, "incremental", "run-inc"), (0, "full", "run-full")]
    assert (hist[0]["rows_written"], hist[0]["inserted"], hist[0]["updated"]) == (1, 1, 0)
    assert (hist[1]["rows_written"], hist[1]["inserted"]) == (2, 2)
    full_at, inc_at = catalog.last_commit_time(uri, "full"), catalog.last_commit_time(uri)
    assert full_at == hist[1]["timestamp"] and inc_at == hist[0]["timestamp"]
    assert full_at.tzinfo is not None and abs(datetime.now(UTC) - full_at) < timedelta(minutes=1)
    catalog.maintain(uri)  # maintenance commits carry no sync type and never count as a sync
    assert catalog.last_commit_time(uri) == inc_at
    with pytest.raises(CatalogConfigError, match="reserved"):
        catalog.merge(uri, videos(["3"], [3]), key=["id"], commit_info={"operation": "x"})


def test_dagster_run_id_is_recorded(tmp_path: Path) -> None:
    @dg.asset
    def tiny(delta: DeltaCatalogResource) -> dg.MaterializeResult:
        catalog = delta.get_catalog()
        result = catalog.overwrite(catalog.table_uri("bronze", "t", "tiny"), videos(["1"], [1]), key=["id"],
                                   commit_info={})
        return dg.MaterializeResult(metadata={"version": result.version})

    run = dg.materialize([tiny], resources={"delta": DeltaCatalogResource(root_uri=str(tmp_path))})
    cat = DeltaCatalog(root_uri=str(tmp_path), metadata_prefix=COMMIT_PREFIX)
    assert cat.history(cat.table_uri("bronze", "t", "tiny"))[0]["run_id"] == run.run_id


def test_timestamps_are_utc_and_naive_ones_are_refused(catalog: DeltaCatalog, uri: str) -> None:
    naive = pa.table({"id": ["1"], "create_time": pa.array([datetime(2026, 1, 1)], pa.timestamp("ns"))})
    with pytest.raises(CatalogConfigError, match="column 'create_time' holds naive timestamps"):
        catalog.overwrite(uri, naive, key=["id"], commit_info={})
    assert not catalog.exists(uri)
    paris = pa.table({"id": ["1"], "create_time": pa.array([1_767_225_600_123_456_789],
                                                           pa.timestamp("ns", "Europe/Paris"))})
    catalog.overwrite(uri, paris, key=["id"], commit_info={})
    out = catalog.read(uri)
    assert out.schema.field("create_time").type == pa.timestamp("us", "UTC")
    assert out.column("create_time")[0].value == 1_767_225_600_123_456  # same instant, us precision
    assert DeltaTable(uri).protocol().reader_features in (None, [])  # no timestampNtz feature


# ------------------------------------------------------------------------------------- retention
def test_retention_removes_old_versions_and_keeps_recent_ones(catalog: DeltaCatalog, uri: str) -> None:
    for i in range(5):
        catalog.overwrite(uri, videos([str(i)], [i]), key=["id"], commit_info={})
    table_dir = Path(uri)
    files_v0 = {p.name for p in table_dir.glob("*.parquet")}
    age_versions(uri, [0, 1, 2], days=10)  # retention is 2 days: v0 and v1 were superseded 10 days ago
    age_versions(uri, [3], days=1)  # v2 was superseded 1 day ago: inside retention
    oldest_kept_time = datetime.now(UTC) - timedelta(days=1, hours=1)

    report = catalog.maintain(uri)
    assert report["vacuumed_files"] == 2 and report["checkpoint_version"] is not None
    assert len(list(table_dir.glob("*.parquet"))) == len(files_v0) - 2
    for v in (0, 1):
        with pytest.raises(VersionNotAvailableError, match="removed by vacuum"):
            catalog.read(uri, version=v)
    assert [catalog.read(uri, version=v).column("id")[0].as_py() for v in (2, 3, 4)] == ["2", "3", "4"]
    assert catalog.read(uri, as_of=oldest_kept_time).column("id")[0].as_py() == "2"
    with pytest.raises(VersionNotAvailableError, match="before the oldest retained commit"):
        catalog.read(uri, as_of=datetime.now(UTC) - timedelta(days=30))
    assert catalog.read(uri).column("id").to_pylist() == ["4"]


def test_old_logs_are_cleaned_after_checkpoint(catalog: DeltaCatalog, uri: str) -> None:
    for i in range(4):
        catalog.overwrite(uri, videos([str(i)], [i]), key=["id"], commit_info={})
    catalog.maintain(uri)  # checkpoint at v3
    catalog.overwrite(uri, videos(["9"], [9]), key=["id"], commit_info={})
    age_versions(uri, [0, 1, 2, 3, 4], days=10)
    catalog.maintain(uri)
    logs = sorted(p.name for p in Path(uri, "_delta_log").glob("*.json"))
    assert "00000000000000000000.json" not in logs and "00000000000000000002.json" not in logs
    with pytest.raises(VersionNotAvailableError):
        catalog.read(uri, version=0)
    assert catalog.read(uri).column("id").to_pylist() == ["9"]


def test_as_of_before_creation_raises(catalog: DeltaCatalog, uri: str) -> None:
    catalog.overwrite(uri, videos(["1"], [1]), key=["id"], commit_info={})
    with pytest.raises(VersionNotAvailableError, match="before the oldest retained commit"):
        catalog.read(uri, as_of=datetime.now(UTC) - timedelta(hours=1))
    assert catalog.read(uri, as_of=datetime.now(UTC)).num_rows == 1
    with pytest.raises(ValueError, match="timezone-aware"):
        catalog.read(uri, as_of=datetime.now())


def retention_of(uri: str) -> tuple[str, str]:
    conf = DeltaTable(uri).metadata().configuration
    return conf["delta.logRetentionDuration"], conf["delta.deletedFileRetentionDuration"]


def test_changing_retention_updates_table_properties(tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    first = DeltaCatalog(root_uri=root, delta_log_retention_days=30)
    uri = first.table_uri("bronze", "tt", "videos")
    first.overwrite(uri, videos(["1"], [1]), key=["id"], commit_info={})
    assert retention_of(uri) == ("interval 30 days", "interval 30 days")
    first.merge(uri, videos(["2"], [2]), key=["id"], commit_info={})
    assert DeltaTable(uri).version() == 1  # unchanged setting: no property commit
    second = DeltaCatalog(root_uri=root, delta_log_retention_days=7)
    result = second.merge(uri, videos(["3"], [3]), key=["id"], commit_info={})
    assert result.version == 3  # one SET TBLPROPERTIES commit, then the merge
    assert retention_of(uri) == ("interval 7 days", "interval 7 days")
    assert second.maintain(uri)["retention_updated"] is False
    third = DeltaCatalog(root_uri=root, delta_log_retention_days=3)
    full = third.overwrite(uri, videos(["4"], [4]), key=["id"], commit_info={})
    assert (full.version, full.commit_attempts) == (DeltaTable(uri).version(), 1)
    assert retention_of(uri) == ("interval 3 days", "interval 3 days") and full.deleted == 3


def test_maintain_compacts_small_files(tmp_path: Path) -> None:
    cat = DeltaCatalog(root_uri=str(tmp_path), compact_min_small_files=4, checkpoint_every_commits=100)
    uri = cat.table_uri("bronze", "tt", "user_info_history")
    for day in range(1, 7):
        cat.snapshot_merge(uri, pa.table({"open_id": ["u1"], "snapshot_date": [date(2026, 1, day)],
                                          "follower_count": pa.array([day], pa.int64())}),
                           key=["open_id"], commit_info={})
    report = cat.maintain(uri)
    assert report["files_before"] >= 4 and report["files_after"] == 1
    assert report["compacted"]["files_removed"] >= 4 and report["checkpoint_version"] == report["version"]
    assert cat.read(uri).num_rows == 6
    assert cat.maintain(uri)["compacted"] is None  # nothing small left to compact


def test_last_full_sync_survives_log_cleanup(tmp_path):
    """A log retention shorter than the full-sync period must not make the catch-up sensor think 'never'."""
    import os as _os
    import time as _time

    catalog = DeltaCatalog(root_uri=str(tmp_path), delta_log_retention_days=1, checkpoint_every_commits=1)
    uri = catalog.table_uri("raw", "f", "videos")
    table = pa.table({"id": pa.array(["1", "2"]), "n": pa.array([1, 2], pa.int64())})
    catalog.overwrite(uri, table, key=["id"], commit_info={}, app_id="app.full")
    full_at = catalog.last_commit_time(uri, sync_type="full")
    for i in range(3):
        catalog.merge(uri, pa.table({"id": pa.array(["1"]), "n": pa.array([10 + i], pa.int64())}),
                      key=["id"], commit_info={})
    log = tmp_path / "raw" / "f" / "videos" / "_delta_log"
    old = _time.time() - 3 * 86400
    for f in log.glob("*.json"):
        _os.utime(f, (old, old))
    catalog.maintain(uri)
    assert not (log / "00000000000000000000.json").exists()  # the full sync's own log entry is gone
    assert all(h.get("sync_type") != "full" for h in catalog.history(uri))
    assert catalog.last_commit_time(uri, sync_type="full") is None  # the commit info went with the log ...
    remembered = catalog.last_commit_time(uri, sync_type="full", app_id="app.full")  # ... the app txn stays
    assert remembered is not None and abs((remembered - full_at).total_seconds()) < 1


def test_read_keys_and_max_value(tmp_path):
    from datetime import datetime, timezone

    catalog = DeltaCatalog(root_uri=str(tmp_path))
    uri = catalog.table_uri("raw", "f", "videos")
    times = [datetime(2026, 1, d, tzinfo=timezone.utc) for d in (3, 9, 5)]
    catalog.overwrite(uri, pa.table({"id": pa.array(["a", "b", "c"]),
                                     "create_time": pa.array(times, pa.timestamp("us", tz="UTC"))}),
                      key=["id"], commit_info={})
    assert catalog.max_value(uri, "create_time") == times[1]
    rows = catalog.read_keys(uri, "id", pa.array(["c", "a", "zz"]))
    assert sorted(rows.column("id").to_pylist()) == ["a", "c"]


def test_read_keys_prunes_by_statistics_without_losing_wanted_rows(catalog: DeltaCatalog, uri: str) -> None:
    import pyarrow.compute as pc

    ids = [str(i) for i in range(40)]  # create_time = T0 - (id % 50) days
    for part in range(4):  # four files, each a 10-day band of create_time
        catalog.merge(uri, videos(ids[part * 10:(part + 1) * 10], list(range(10))), key=["id"], commit_info={})
    wanted = pa.array(["2", "5", "39"])
    whole = catalog.read_keys(uri, "id", wanted)
    recent = pc.field("create_time") >= pa.scalar(T0 - timedelta(days=9), pa.timestamp("us", "UTC"))
    pruned = catalog.read_keys(uri, "id", wanted, prune=recent)
    assert sorted(whole.column("id").to_pylist()) == ["2", "39", "5"]
    assert sorted(pruned.column("id").to_pylist()) == ["2", "5"]  # "39" is 39 days old: outside the prune
    assert pruned.schema == whole.schema


def test_every_write_kind_records_the_same_counts_in_its_commit(catalog: DeltaCatalog, uri: str) -> None:
    """Issue 16: a merge's commit records inserted/updated/deleted/unchanged under the same names as an
    overwrite's, read from the raw Delta history (not derived afterwards from delta's metrics)."""
    from tiktok_organic_dagster.lake.history import COUNT_FIELDS

    def counts(table_uri: str) -> list[tuple[str, str, dict]]:
        return [(e["operation"], e[f"{catalog.metadata_prefix}sync_type"],
                 {k: e.get(f"{catalog.metadata_prefix}{k}") for k in COUNT_FIELDS})
                for e in reversed(DeltaTable(table_uri).history()) if f"{catalog.metadata_prefix}sync_type" in e]

    def c(rows: int, ins: int, upd: int, dele: int, unch: int) -> dict:
        return dict(zip(COUNT_FIELDS, (rows, ins, upd, dele, unch), strict=True))

    catalog.overwrite(uri, videos(["1", "2", "3"], [1, 2, 3]), key=["id"], commit_info={})
    batch = videos(["2", "3", "4"], [2, 3, 4])
    catalog.overwrite(uri, pa.RecordBatchReader.from_batches(batch.schema, batch.to_batches()), key=["id"],
                      commit_info={})
    catalog.merge(uri, videos(["3", "4", "5"], [30, 4, 5], synced=T1), key=["id"], commit_info={})
    catalog.merge(uri, videos(["4", "6"], [4, 6], synced=T1), key=["id"], commit_info={},
                  update_only_if_changed=False)
    assert counts(uri) == [
        ("WRITE", "full", c(3, 3, 0, 0, 0)),
        ("WRITE", "full", c(3, 1, 2, 1, 0)),  # streamed; 1 left the table
        ("MERGE", "incremental", c(3, 1, 1, 0, 1)),  # 5 new, 3 changed, 4 unchanged
        ("MERGE", "incremental", c(2, 1, 1, 0, 0)),  # update_only_if_changed=False rewrites 4 anyway
    ]
    merges = [e for e in DeltaTable(uri).history() if e["operation"] == "MERGE"]
    assert {(e["operationMetrics"]["num_target_rows_inserted"], e["operationMetrics"]["num_target_rows_updated"])
            for e in merges} == {(1, 1)}  # delta's own metrics of the same commits agree

    history = catalog.table_uri("bronze", "tiktok", "videos_history")
    day = pa.array([date(2026, 1, 1)] * 2, pa.date32())
    catalog.snapshot_merge(history, videos(["1", "2"], [1, 2]).append_column("snapshot_date", day),
                           key=["id"], commit_info={})
    catalog.snapshot_merge(history, videos(["1", "2"], [1, 7]).append_column("snapshot_date", day),
                           key=["id"], commit_info={})
    # the merge that creates the table writes it with the streamed writer, as a streamed first overwrite does
    assert counts(history) == [("CREATE TABLE", "snapshot", c(2, 2, 0, 0, 0)),
                               ("MERGE", "snapshot", c(2, 0, 1, 0, 1))]
    assert [(h["inserted"], h["updated"], h["unchanged"]) for h in catalog.history(history)] == [(0, 1, 1), (2, 0, 0)]


def test_merge_change_detection_is_null_safe_for_floats_and_nested_columns(catalog: DeltaCatalog, uri: str) -> None:
    """The rows a merge counts as updated are the rows it rewrites: null = null, NaN = NaN, lists compared."""
    def rows(score: list, tags: list) -> pa.Table:
        return pa.table({"id": ["1", "2", "3"], "score": pa.array(score, pa.float64()),
                         "tags": pa.array(tags, pa.list_(pa.string()))})

    catalog.merge(uri, rows([1.0, float("nan"), None], [["a"], None, []]), key=["id"], commit_info={})
    same = catalog.merge(uri, rows([1.0, float("nan"), None], [["a"], None, []]), key=["id"], commit_info={})
    assert (same.version, same.inserted, same.updated, same.unchanged) == (0, 0, 0, 3)  # no commit
    moved = catalog.merge(uri, rows([1.0, float("nan"), 2.0], [["a", "b"], None, []]), key=["id"], commit_info={})
    assert (moved.version, moved.inserted, moved.updated, moved.unchanged) == (1, 0, 2, 1)
    entry = DeltaTable(uri).history(1)[0]
    assert entry["operationMetrics"]["num_target_rows_updated"] == entry["lake.updated"] == 2
