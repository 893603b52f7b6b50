"""Partitioned tables (one partition per tenant) against real Delta tables on local disk (tmp_path).

The concurrency tests make two writers open the table at the same version before either commits (a barrier),
so the second commit always lands on a version it did not read: delta-rs must then decide whether the two
conflict. With the partition literal in the merge predicate it does not (both commit, no retry by the catalog);
without it the same race fails, which shows the test can fail.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from tiktok_organic_dagster.lake import CatalogConfigError, DeltaCatalog, VersionNotAvailableError, WriteResult, writes
from tiktok_organic_dagster_tests.fixtures_s3 import S3Server

UTC = timezone.utc
T0 = datetime(2026, 1, 1, tzinfo=UTC)
A, B = ("account", "a"), ("account", "b")


def rows(account: str, ids: list[str], views: list[int], **extra: list[Any]) -> pa.Table:
    cols: dict[str, Any] = {
        "account": pa.array([account] * len(ids), pa.string()),
        "id": pa.array(ids, pa.string()),
        "title": pa.array([f"secret {account} {i}" for i in ids], pa.string()),
        "create_time": pa.array([T0 + timedelta(days=int(i)) for i in ids], pa.timestamp("us", "UTC")),
        "view_count": pa.array(views, pa.int64()),
    }
    cols.update({k: pa.array(v) for k, v in extra.items()})
    return pa.table(cols)


def by_key(table: pa.Table) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["account"], r["id"]): r for r in table.to_pylist()}


def views(catalog: DeltaCatalog, uri: str, partition: tuple[str, str]) -> dict[str, int]:
    return {r["id"]: r["view_count"] for r in catalog.read(uri, partition=partition).to_pylist()}


def files_of(uri: str, value: str) -> set[str]:
    actions = pa.table(DeltaTable(uri).get_add_actions(flatten=True))
    return {p for p, v in zip(actions.column("path").to_pylist(), actions.column("partition.account").to_pylist(),
                              strict=True) if v == value}


@pytest.fixture
def catalog(tmp_path: Path) -> DeltaCatalog:
    return DeltaCatalog(str(tmp_path), metadata_prefix="lake.", commit_retry_backoff_seconds=0.01)


@pytest.fixture
def uri(catalog: DeltaCatalog) -> str:
    return catalog.table_uri("bronze", "tt", "videos")


# ------------------------------------------------------------------------------------------- overwrite
def test_overwrite_of_one_partition_keeps_the_others_and_counts_per_partition(catalog: DeltaCatalog,
                                                                               uri: str) -> None:
    first = catalog.overwrite(uri, rows("a", ["1", "2", "3"], [1, 2, 3]), key=["id"], commit_info={}, partition=A)
    assert (first.version, first.inserted, first.updated, first.deleted) == (0, 3, 0, 0)
    assert catalog.partition_columns(uri) == ["account"]
    other = catalog.overwrite(uri, rows("b", ["1", "2"], [10, 20]), key=["id"], commit_info={}, partition=B)
    assert (other.inserted, other.updated, other.deleted) == (2, 0, 0)  # A's keys 1, 2 are not B's
    again = catalog.overwrite(uri, rows("a", ["2", "3", "4"], [22, 33, 44], extra=["x"] * 3), key=["id"],
                              commit_info={"lake.run_id": "r1"}, partition=A)
    assert (again.inserted, again.updated, again.deleted, again.unchanged) == (1, 2, 1, 0)
    data = by_key(catalog.read(uri))
    assert sorted(data) == [("a", "2"), ("a", "3"), ("a", "4"), ("b", "1"), ("b", "2")]
    assert data[("a", "2")]["view_count"] == 22 and data[("a", "2")]["extra"] == "x"
    assert data[("b", "1")]["view_count"] == 10 and data[("b", "1")]["extra"] is None  # new column merged in
    commit = catalog.history(uri, limit=1)[0]
    assert commit["metadata"]["lake.partition_column"] == "account"
    assert commit["metadata"]["lake.partition_value"] == "a"
    assert (commit["inserted"], commit["updated"], commit["deleted"], commit["run_id"]) == (1, 2, 1, "r1")
    assert catalog.row_count(uri, partition=A) == 3 and catalog.row_count(uri, partition=B) == 2
    assert catalog.row_count(uri) == 5 and catalog.row_count(uri, version=0, partition=A) == 3


def test_streamed_overwrite_of_a_partition(catalog: DeltaCatalog, uri: str) -> None:
    catalog.overwrite(uri, rows("a", ["1", "2"], [1, 2]), key=["id"], commit_info={}, partition=A)
    new = rows("b", [str(i) for i in range(10)], list(range(10)), share_count=list(range(10)))
    consumed: list[int] = []

    def batches() -> Any:
        for batch in new.to_batches(max_chunksize=3):
            consumed.append(batch.num_rows)
            yield batch

    result = catalog.overwrite(uri, pa.RecordBatchReader.from_batches(new.schema, batches()), key=["id"],
                               commit_info={}, app_id="full-b", partition=B)
    assert consumed == [3, 3, 3, 1] and (result.rows_written, result.inserted, result.deleted) == (10, 10, 0)
    replaced = catalog.overwrite(
        uri, lambda: pa.RecordBatchReader.from_batches(new.schema, new.slice(5).to_batches(max_chunksize=2)),
        key=["id"], commit_info={}, partition=B)  # a replayable stream
    assert (replaced.inserted, replaced.updated, replaced.deleted) == (0, 5, 5)
    assert views(catalog, uri, A) == {"1": 1, "2": 2}  # A untouched
    assert views(catalog, uri, B) == {str(i): i for i in range(5, 10)}
    assert "share_count" in catalog.schema(uri).names
    # the streamed files are B's: in its folder, its partition value in the log, no partition column inside
    assert files_of(uri, "b") and all(p.startswith("account=b/") for p in files_of(uri, "b"))
    assert all("account" not in pq.read_schema(f"{uri}/{p}").names for p in files_of(uri, "b"))
    assert catalog.max_value(uri, "create_time", partition=B) == T0 + timedelta(days=9)
    assert catalog.last_commit_time(uri, "full", app_id="full-b", partition=B) is not None


def test_streamed_overwrite_creates_a_partitioned_table_and_checks_every_batch(catalog: DeltaCatalog,
                                                                              uri: str) -> None:
    data = rows("a", ["1", "2", "3"], [1, 2, 3])
    created = catalog.overwrite(uri, pa.RecordBatchReader.from_batches(data.schema, data.to_batches()),
                                key=["id"], commit_info={}, partition=A)
    assert created.inserted == 3 and catalog.partition_columns(uri) == ["account"]
    mixed = pa.concat_tables([rows("a", ["4"], [4]), rows("b", ["5"], [5])])
    with pytest.raises(CatalogConfigError, match=r"outside partition account='a' \(e.g. account='b'\)"):
        catalog.overwrite(uri, pa.RecordBatchReader.from_batches(mixed.schema, mixed.to_batches(max_chunksize=1)),
                          key=["id"], commit_info={}, partition=A)
    assert catalog.version(uri) == 0 and views(catalog, uri, A) == {"1": 1, "2": 2, "3": 3}


# --------------------------------------------------------------------------------------------- merges
def test_merge_and_snapshot_merge_per_partition(catalog: DeltaCatalog, uri: str) -> None:
    created = catalog.merge(uri, rows("a", ["1", "2"], [1, 2]), key=["id"], commit_info={}, partition=A)
    assert created.inserted == 2 and catalog.partition_columns(uri) == ["account"]
    catalog.merge(uri, rows("b", ["1", "2"], [10, 20]), key=["id"], commit_info={}, partition=B)
    result = catalog.merge(uri, rows("a", ["2", "3", "1"], [25, 30, 1]), key=["id"], commit_info={}, partition=A,
                           stored_at_least=("create_time", T0))
    assert (result.inserted, result.updated, result.unchanged) == (1, 1, 1)  # counted within A only
    assert views(catalog, uri, A) == {"1": 1, "2": 25, "3": 30} and views(catalog, uri, B) == {"1": 10, "2": 20}
    commit = DeltaTable(uri).history(1)[0]
    assert "t.account = 'a'" in commit["operationParameters"]["mergePredicate"]
    assert commit["operationMetrics"]["num_target_files_skipped_during_scan"] >= 1  # B's files not read
    assert (commit["lake.partition_column"], commit["lake.partition_value"]) == ("account", "a")

    snaps = catalog.table_uri("bronze", "tt", "user_info_history")

    def snap(account: str, day: date, followers: int) -> pa.Table:
        return pa.table({"account": [account], "open_id": ["u1"], "snapshot_date": pa.array([day], pa.date32()),
                         "follower_count": pa.array([followers], pa.int64())})

    d1, d2 = date(2026, 1, 1), date(2026, 1, 2)
    catalog.snapshot_merge(snaps, snap("a", d1, 100), key=["open_id"], commit_info={}, partition=A)
    catalog.snapshot_merge(snaps, snap("b", d1, 7), key=["open_id"], commit_info={}, partition=B)
    again = catalog.snapshot_merge(snaps, snap("a", d1, 100), key=["open_id"], commit_info={}, partition=A)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 1)
    later = catalog.snapshot_merge(snaps, snap("a", d2, 110), key=["open_id"], commit_info={}, partition=A)
    assert later.inserted == 1
    assert catalog.row_count(snaps, partition=A) == 2 and catalog.row_count(snaps, partition=B) == 1
    assert catalog.read(snaps, partition=B).column("follower_count").to_pylist() == [7]


def _race_open(catalog: DeltaCatalog, monkeypatch: pytest.MonkeyPatch, writers: int) -> list[int]:
    """Each thread's first ``_open_or_none`` waits until every writer has opened: all read the same version."""
    barrier = threading.Barrier(writers, timeout=60)
    seen = threading.local()
    read_versions: list[int] = []
    real = catalog._open_or_none

    def open_then_wait(uri: str) -> DeltaTable | None:
        dt = real(uri)
        if not getattr(seen, "done", False):
            seen.done = True
            read_versions.append(dt.version() if dt is not None else -1)
            barrier.wait()
        return dt

    monkeypatch.setattr(catalog, "_open_or_none", open_then_wait)
    return read_versions


def _in_threads(*jobs: Callable[[], Any]) -> list[Any]:
    results: list[Any] = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except BaseException as exc:  # reported to the test below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def _merge_a(catalog: DeltaCatalog, uri: str) -> WriteResult:
    return catalog.merge(uri, rows("a", ["2", "3"], [200, 300]), key=["id"], commit_info={}, partition=A)


def _overwrite_a(catalog: DeltaCatalog, uri: str) -> WriteResult:
    return catalog.overwrite(uri, rows("a", ["1", "2", "3"], [1, 200, 300]), key=["id"], commit_info={},
                             partition=A)


def _stream_a(catalog: DeltaCatalog, uri: str) -> WriteResult:
    data = rows("a", ["1", "2", "3"], [1, 200, 300])
    return catalog.overwrite(uri, pa.RecordBatchReader.from_batches(data.schema, data.to_batches(max_chunksize=1)),
                             key=["id"], commit_info={}, partition=A)  # a bare reader: the catalog cannot retry it


@pytest.mark.parametrize(("write_a", "streamed_exec"), [
    (_merge_a, False), (_merge_a, True), (_overwrite_a, False), (_stream_a, False)],
    ids=["merges", "merges-streamed-exec", "overwrite-and-merge", "streamed-overwrite-and-merge"])
def test_two_concurrent_writes_into_different_partitions_both_commit(
        catalog: DeltaCatalog, uri: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        write_a: Callable[[DeltaCatalog, str], WriteResult], streamed_exec: bool) -> None:
    if streamed_exec:  # delta-rs then derives no pruning predicate from the source: only the literal helps
        monkeypatch.setattr(writes, "STREAMED_MERGE_MIN_ROWS", 0)
    catalog.overwrite(uri, rows("a", ["1", "2"], [1, 2]), key=["id"], commit_info={}, partition=A)
    catalog.overwrite(uri, rows("b", ["1", "2"], [10, 20]), key=["id"], commit_info={}, partition=B)
    start = catalog.version(uri)
    assert start is not None
    read_versions = _race_open(catalog, monkeypatch, 2)
    caplog.set_level(logging.WARNING)
    results = _in_threads(
        lambda: write_a(catalog, uri),
        lambda: catalog.merge(uri, rows("b", ["2", "4"], [2000, 4000]), key=["id"], commit_info={}, partition=B))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert read_versions == [start, start]  # both opened the same version before either committed
    assert [r.commit_attempts for r in results] == [1, 1]  # no retry by the catalog ...
    assert "commit conflict" not in caplog.text
    commits = {e["version"]: e for e in DeltaTable(uri).history(2)}
    assert sorted(commits) == [start + 1, start + 2]
    assert {c["lake.partition_value"] for c in commits.values()} == {"a", "b"}
    assert commits[start + 2]["readVersion"] == start  # ... delta-rs saw the race and resolved it itself
    assert views(catalog, uri, A) == {"1": 1, "2": 200, "3": 300}
    assert views(catalog, uri, B) == {"1": 10, "2": 2000, "4": 4000}


def _race_deltalake(uri: str, predicate: Callable[[str], str], streamed: bool) -> list[Any]:
    """Two merges through deltalake directly, both opened at the same version: what delta-rs does alone."""
    barrier = threading.Barrier(2, timeout=60)

    def merge(account: str) -> int:
        dt = DeltaTable(uri)
        barrier.wait()
        dt.merge(rows(account, ["2", "9"], [7, 9]), predicate(account), source_alias="s", target_alias="t",
                 streamed_exec=streamed).when_matched_update_all().when_not_matched_insert_all().execute()
        return dt.version()

    return _in_threads(lambda: merge("a"), lambda: merge("b"))


@pytest.mark.parametrize(("predicate", "streamed", "conflicts"), [
    (lambda acc: f"t.id = s.id AND t.account = s.account AND t.account = '{acc}'", True, False),
    (lambda acc: f"t.id = s.id AND t.account = s.account AND t.account = '{acc}'", False, False),
    (lambda acc: "t.id = s.id AND t.account = s.account", True, True),  # no literal: reads the whole table
    (lambda acc: "t.id = s.id", False, True),
], ids=["literal-streamed", "literal", "no-literal-streamed", "key-only"])
def test_without_the_partition_literal_the_same_race_conflicts(
        catalog: DeltaCatalog, uri: str, predicate: Callable[[str], str], streamed: bool, conflicts: bool) -> None:
    catalog.overwrite(uri, rows("a", ["1", "2"], [1, 2]), key=["id"], commit_info={}, partition=A)
    catalog.overwrite(uri, rows("b", ["1", "2"], [10, 20]), key=["id"], commit_info={}, partition=B)
    results = _race_deltalake(uri, predicate, streamed)
    failed = [r for r in results if isinstance(r, BaseException)]
    if conflicts:
        assert len(failed) == 1 and isinstance(failed[0], CommitFailedError), results
        assert "concurrent" in str(failed[0])
    else:
        assert not failed and sorted(results) == [2, 3], results


# --------------------------------------------------------------------------------------- rejections
def test_rows_of_another_partition_are_rejected(catalog: DeltaCatalog, uri: str) -> None:
    catalog.overwrite(uri, rows("a", ["1"], [1]), key=["id"], commit_info={}, partition=A)
    wrong = rows("b", ["2"], [2])
    for write in (lambda: catalog.overwrite(uri, wrong, key=["id"], commit_info={}, partition=A),
                  lambda: catalog.merge(uri, wrong, key=["id"], commit_info={}, partition=A)):
        with pytest.raises(CatalogConfigError, match=r"1 row\(s\) are outside partition account='a'"):
            write()
    nulls = rows("a", ["3"], [3]).set_column(0, "account", pa.array([None], pa.string()))
    with pytest.raises(CatalogConfigError, match="outside partition account='a' .e.g. account=None"):
        catalog.merge(uri, nulls, key=["id"], commit_info={}, partition=A)
    with pytest.raises(CatalogConfigError, match="partition column 'tenant' is not in the data columns"):
        catalog.merge(uri, rows("a", ["3"], [3]), key=["id"], commit_info={}, partition=("tenant", "a"))
    with pytest.raises(CatalogConfigError, match="must be a non-empty string"):
        catalog.merge(uri, rows("a", ["3"], [3]), key=["id"], commit_info={}, partition=("account", ""))
    snap = pa.table({"account": ["b"], "open_id": ["u"], "snapshot_date": pa.array([date(2026, 1, 1)])})
    with pytest.raises(CatalogConfigError, match="outside partition account='a'"):
        catalog.snapshot_merge(uri, snap, key=["open_id"], commit_info={}, partition=A)
    assert catalog.version(uri) == 0 and catalog.partition_values(uri, "account") == ["a"]


def test_partition_and_table_layout_must_agree(catalog: DeltaCatalog, uri: str) -> None:
    plain = catalog.table_uri("bronze", "tt", "plain")
    catalog.overwrite(plain, rows("a", ["1"], [1]), key=["id"], commit_info={})
    for call in (lambda: catalog.overwrite(plain, rows("a", ["1"], [1]), key=["id"], commit_info={}, partition=A),
                 lambda: catalog.merge(plain, rows("a", ["1"], [1]), key=["id"], commit_info={}, partition=A),
                 lambda: catalog.read(plain, partition=A),
                 lambda: catalog.max_value(plain, "create_time", partition=A),
                 lambda: catalog.delete_partition(plain, "account", "a", commit_info={}),
                 lambda: catalog.maintain(plain, partition=A)):
        with pytest.raises(CatalogConfigError, match=r"is not partitioned, not by 'account'"):
            call()
    with pytest.raises(CatalogConfigError, match="not a partition column"):
        catalog.partition_values(plain, "account")
    assert catalog.version(plain) == 0 and catalog.partition_columns(plain) == []

    catalog.overwrite(uri, rows("a", ["1"], [1]), key=["id"], commit_info={}, partition=A)
    with pytest.raises(CatalogConfigError, match=r"partitioned by \['account'\], not by 'id'"):
        catalog.merge(uri, rows("a", ["1"], [1]), key=["id"], commit_info={}, partition=("id", "1"))
    with pytest.raises(CatalogConfigError, match=r"partitioned by \['account'\]: overwrite needs partition="):
        catalog.overwrite(uri, rows("b", ["1"], [1]), key=["id"], commit_info={})  # would replace every tenant
    assert catalog.version(uri) == 0


def test_partition_values_are_quoted_in_predicates(catalog: DeltaCatalog, uri: str) -> None:
    odd = ("account", "o'brien")
    catalog.overwrite(uri, rows("o'brien", ["1"], [1]), key=["id"], commit_info={}, partition=odd)
    catalog.overwrite(uri, rows("b", ["1"], [2]), key=["id"], commit_info={}, partition=B)
    catalog.merge(uri, rows("o'brien", ["1", "2"], [5, 6]), key=["id"], commit_info={}, partition=odd)
    catalog.overwrite(uri, rows("o'brien", ["3"], [7]), key=["id"], commit_info={}, partition=odd)
    assert views(catalog, uri, odd) == {"3": 7} and views(catalog, uri, B) == {"1": 2}
    assert catalog.partition_values(uri, "account") == ["b", "o'brien"]


# ---------------------------------------------------------------------------------------------- reads
def test_reads_per_partition(catalog: DeltaCatalog, uri: str) -> None:
    assert catalog.partition_values(uri, "account") == [] and catalog.last_commit_time(uri, partition=A) is None
    catalog.overwrite(uri, rows("a", ["1", "5"], [1, 5]), key=["id"], commit_info={}, partition=A)
    catalog.merge(uri, rows("b", ["2", "3"], [2, 3]), key=["id"], commit_info={}, partition=B)
    assert catalog.partition_values(uri, "account") == ["a", "b"]
    assert catalog.max_value(uri, "create_time", partition=A) == T0 + timedelta(days=5)
    assert catalog.max_value(uri, "create_time", partition=B) == T0 + timedelta(days=3)
    assert catalog.max_value(uri, "create_time") == T0 + timedelta(days=5)
    assert catalog.file_ranges(uri, "view_count", partition=B) == [(2, 3)]
    assert catalog.row_count(uri, partition=A) == 2 and catalog.describe(uri, partition=B)[0] == 2
    assert catalog.describe(uri)[0] == 4
    recent = catalog.read(uri, partition=A, filter=pc.field("view_count") > 2, columns=["id"])
    assert recent.column("id").to_pylist() == ["5"]
    found = catalog.read_keys(uri, "id", pa.array(["1", "2", "3"]), partition=B)
    assert sorted(found.column("id").to_pylist()) == ["2", "3"]
    full_a, incr_b = (catalog.last_commit_time(uri, "full", partition=A),
                      catalog.last_commit_time(uri, "incremental", partition=B))
    assert full_a is not None and incr_b is not None and full_a <= incr_b
    assert catalog.last_commit_time(uri, "incremental", partition=A) is None  # B's merge is not A's
    assert catalog.last_commit_time(uri, "full", partition=B) is None
    assert catalog.last_commit_time(uri, partition=("account", "c")) is None
    assert catalog.row_count(uri, partition=("account", "c")) == 0
    assert catalog.max_value(uri, "create_time", partition=("account", "c")) is None


# --------------------------------------------------------------------------------- delete and purge
def _parquet_holding(table_dir: Path, marker: str) -> list[str]:
    """Every Parquet file under the table folder whose content mentions ``marker`` (data files are read in
    full; a checkpoint's actions too)."""
    return [str(p.relative_to(table_dir)) for p in sorted(table_dir.rglob("*.parquet"))
            if marker in str(pq.read_table(p).to_pylist())]


def test_delete_partition_then_purge_leaves_no_file_with_its_rows(catalog: DeltaCatalog, uri: str) -> None:
    catalog.overwrite(uri, rows("a", ["1", "2", "3"], [1, 2, 3]), key=["id"], commit_info={}, partition=A)
    catalog.overwrite(uri, rows("b", ["1", "2"], [10, 20]), key=["id"], commit_info={}, partition=B)
    catalog.merge(uri, rows("a", ["3", "4"], [30, 40]), key=["id"], commit_info={}, partition=A)  # a rewrite
    catalog.overwrite(uri, rows("a", ["1", "2", "3", "4", "5"], [1, 2, 3, 4, 5]), key=["id"], commit_info={},
                      partition=A)
    before = catalog.version(uri)
    assert before is not None
    table_dir = Path(uri)
    assert _parquet_holding(table_dir, "secret a")  # (the marker would be found)

    deleted = catalog.delete_partition(uri, "account", "a", commit_info={"lake.run_id": "offboard"})
    assert (deleted.version, deleted.deleted, deleted.rows_written) == (before + 1, 5, 0)
    commit = catalog.history(uri, limit=1)[0]
    assert commit["operation"] == "DELETE" and commit["deleted"] == 5 and commit["sync_type"] is None
    assert commit["metadata"]["lake.operation"] == "delete_partition"
    assert commit["metadata"]["lake.partition_value"] == "a" and commit["run_id"] == "offboard"
    assert catalog.partition_values(uri, "account") == ["b"] and catalog.row_count(uri, partition=A) == 0
    nothing = catalog.delete_partition(uri, "account", "a", commit_info={})
    assert (nothing.version, nothing.deleted) == (before + 1, 0)  # nothing there: no commit
    assert catalog.read(uri, version=before, partition=A).num_rows == 5  # a delete alone keeps time travel
    b_files = files_of(uri, "b")

    report = catalog.purge(uri)
    assert report["removed_files"] and all(p.startswith(("account=a/", "account=b/")) for p in report["removed_files"])
    assert report["checkpoint_version"] == catalog.version(uri)
    data_files = [p for p in table_dir.rglob("*.parquet") if "_delta_log" not in p.parts]
    assert {str(p.relative_to(table_dir)) for p in data_files} == b_files  # only B's current files remain
    for path in data_files:  # and none of them holds a row of A
        content = pq.read_table(path)
        assert not any("secret a" in str(v) for v in content.to_pylist()), path
    assert _parquet_holding(table_dir, "secret a") == []  # no Parquet at all mentions A (the checkpoint too)
    assert by_key(catalog.read(uri)) == by_key(catalog.read(uri, partition=B))
    assert views(catalog, uri, B) == {"1": 10, "2": 20}
    with pytest.raises(VersionNotAvailableError):  # purge drops time travel for every partition
        catalog.read(uri, version=before)
    catalog.merge(uri, rows("b", ["3"], [30]), key=["id"], commit_info={}, partition=B)  # still writable
    assert views(catalog, uri, B) == {"1": 10, "2": 20, "3": 30}


# ------------------------------------------------------------------------------------------ maintain
def test_maintain_a_partition_compacts_only_its_files_and_does_not_conflict(tmp_path: Path) -> None:
    catalog = DeltaCatalog(str(tmp_path), metadata_prefix="lake.", compact_min_small_files=3)
    uri = catalog.table_uri("bronze", "tt", "videos")
    for i in range(4):
        catalog.merge(uri, rows("a", [str(i)], [i]), key=["id"], commit_info={}, partition=A)
        catalog.merge(uri, rows("b", [str(i)], [i]), key=["id"], commit_info={}, partition=B)
    b_files = files_of(uri, "b")
    assert len(files_of(uri, "a")) == 4 and len(b_files) == 4
    stale_b = DeltaTable(uri)  # another tenant's merge, opened before the maintenance commits
    report = catalog.maintain(uri, partition=A)
    assert report["partition"] == {"account": "a"} and report["compacted"]["files_removed"] == 4
    assert len(files_of(uri, "a")) == 1 and files_of(uri, "b") == b_files
    stale_b.merge(rows("b", ["9"], [9]), "t.id = s.id AND t.account = s.account AND t.account = 'b'",
                  source_alias="s", target_alias="t").when_not_matched_insert_all().execute()
    assert views(catalog, uri, A) == {str(i): i for i in range(4)}
    assert views(catalog, uri, B) == {**{str(i): i for i in range(4)}, "9": 9}
    # the contrast: compacting the whole table rewrites the files a concurrent merge of B read
    stale_b = DeltaTable(uri)
    DeltaTable(uri).optimize.compact()
    with pytest.raises(CommitFailedError):
        stale_b.merge(rows("b", ["8"], [8]), "t.id = s.id AND t.account = s.account AND t.account = 'b'",
                      source_alias="s", target_alias="t").when_not_matched_insert_all().execute()


# ------------------------------------------------------------------------------------ object store
def test_partitions_on_s3(s3_root: str, s3_server: S3Server) -> None:
    """The streamed writer puts a partition's files in its folder through delta-rs's object store too."""
    catalog = DeltaCatalog(s3_root, metadata_prefix="lake.", storage_options={"timeout": "20s"})
    uri = catalog.table_uri("bronze", "tt", "videos")
    data = rows("a", ["1", "2", "3"], [1, 2, 3])
    catalog.overwrite(uri, lambda: data.to_reader(max_chunksize=2), key=["id"], commit_info={}, partition=A)
    catalog.overwrite(uri, rows("b", ["1"], [10]), key=["id"], commit_info={}, partition=B)
    merged = catalog.merge(uri, rows("a", ["3", "4"], [30, 4]), key=["id"], commit_info={}, partition=A)
    assert (merged.inserted, merged.updated) == (1, 1)
    assert views(catalog, uri, A) == {"1": 1, "2": 2, "3": 30, "4": 4} and views(catalog, uri, B) == {"1": 10}
    assert catalog.delete_partition(uri, "account", "a", commit_info={}).deleted == 4
    catalog.purge(uri)
    prefix = uri.removeprefix(f"s3://{s3_server.bucket}/")
    data_keys = [k for k in s3_server.list_keys(prefix) if k.endswith(".parquet") and "/_delta_log/" not in k]
    assert data_keys and all("/account=b/" in k for k in data_keys)
    assert catalog.partition_values(uri, "account") == ["b"] and views(catalog, uri, B) == {"1": 10}
