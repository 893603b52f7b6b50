"""DeltaCatalog on ``s3://`` against a moto_server subprocess (fixtures_s3), incl. two concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import os
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from tiktok_organic_dagster.lake import DeltaCatalog, VersionNotAvailableError
from tiktok_organic_dagster_tests.fixtures_s3 import S3Server

UTC = timezone.utc
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CLIENT_OPTIONS = {"timeout": "20s", "retry_timeout": "30s"}  # fail fast instead of 180 s on a hang


def videos(ids: list[str], views: list[int]) -> pa.Table:
    return pa.table({
        "id": pa.array(ids, pa.string()),
        "create_time": pa.array([T0] * len(ids), pa.timestamp("us", "UTC")),
        "view_count": pa.array(views, pa.int64()),
        "_synced_at": pa.array([datetime.now(UTC)] * len(ids), pa.timestamp("us", "UTC")),
    })


@pytest.fixture
def catalog(s3_root: str) -> DeltaCatalog:
    return DeltaCatalog(root_uri=s3_root, delta_log_retention_days=3, storage_options=CLIENT_OPTIONS,
                        commit_retry_backoff_seconds=0.02, compact_min_small_files=3)


def test_s3_write_merge_read_history(catalog: DeltaCatalog, s3_root: str, s3_server: S3Server) -> None:
    uri = catalog.table_uri("bronze", "tiktok", "videos")
    assert uri.startswith(s3_root) and not catalog.exists(uri) and catalog.version(uri) is None
    first = catalog.overwrite(uri, videos(["1", "2", "3"], [1, 2, 3]), key=["id"],
                              commit_info={"lake.run_id": "r1"})
    assert (first.version, first.inserted) == (0, 3)
    merged = catalog.merge(uri, videos(["3", "4"], [30, 4]), key=["id"], commit_info={})
    assert (merged.version, merged.inserted, merged.updated) == (1, 1, 1)
    full = catalog.overwrite(uri, videos(["3", "4"], [30, 4]), key=["id"], commit_info={})
    assert (full.inserted, full.updated, full.deleted) == (0, 2, 2)
    assert sorted(catalog.read(uri, columns=["id"]).column("id").to_pylist()) == ["3", "4"]
    assert catalog.read(uri, version=0).num_rows == 3
    hist = catalog.history(uri)
    assert [(h["version"], h["sync_type"]) for h in hist] == [(2, "full"), (1, "incremental"), (0, "full")]
    assert hist[2]["run_id"] == "r1"
    assert catalog.last_commit_time(uri, "full") == hist[0]["timestamp"]
    keys = s3_server.list_keys(uri.removeprefix(f"s3://{s3_server.bucket}/"))
    assert any(k.endswith("_delta_log/00000000000000000002.json") for k in keys)


def test_s3_streamed_overwrite_creates_and_replaces(catalog: DeltaCatalog, s3_server: S3Server) -> None:
    """The streamed path writes its own Parquet files through delta-rs's object store, then commits them."""
    uri = catalog.table_uri("bronze", "tiktok", "videos_streamed")
    first = videos([str(i) for i in range(30)], list(range(30)))
    created = catalog.overwrite(uri, lambda: first.to_reader(max_chunksize=7), key=["id"], commit_info={})
    assert (created.version, created.rows_written, created.inserted) == (0, 30, 30)
    second = videos([str(i) for i in range(20, 45)], list(range(25)))
    replaced = catalog.overwrite(uri, lambda: second.to_reader(max_chunksize=7), key=["id"], commit_info={})
    assert (replaced.version, replaced.inserted, replaced.updated, replaced.deleted) == (1, 15, 10, 20)
    out = catalog.read(uri)
    assert sorted(out.column("id").to_pylist(), key=int) == [str(i) for i in range(20, 45)]
    assert catalog.row_count(uri) == 25 and catalog.max_value(uri, "view_count") == 24
    assert catalog.read(uri, version=0).num_rows == 30
    keys = s3_server.list_keys(uri.removeprefix(f"s3://{s3_server.bucket}/"))
    assert sum(k.endswith(".parquet") and "_delta_log" not in k for k in keys) == 2


def test_s3_failing_stream_leaves_previous_version(catalog: DeltaCatalog) -> None:
    uri = catalog.table_uri("bronze", "tiktok", "videos")
    catalog.overwrite(uri, videos(["1"], [1]), key=["id"], commit_info={})
    big = videos([str(i) for i in range(50)], list(range(50)))

    def batches():
        yield big.to_batches(max_chunksize=10)[0]
        raise TimeoutError("source stalled")

    with pytest.raises(TimeoutError):
        catalog.overwrite(uri, pa.RecordBatchReader.from_batches(big.schema, batches()), key=["id"],
                          commit_info={})
    assert catalog.version(uri) == 0 and catalog.read(uri).column("id").to_pylist() == ["1"]


def test_s3_retention_properties_and_maintain(catalog: DeltaCatalog, s3_root: str,
                                              s3_server: S3Server) -> None:
    uri = catalog.table_uri("bronze", "tiktok", "user_info_history")
    for day in range(1, 5):
        catalog.snapshot_merge(uri, pa.table({"open_id": ["u1"], "snapshot_date": [f"2026-01-0{day}"],
                                              "follower_count": pa.array([day], pa.int64())}),
                               key=["open_id"], commit_info={})
    longer = DeltaCatalog(root_uri=s3_root, delta_log_retention_days=5, storage_options=CLIENT_OPTIONS,
                          compact_min_small_files=3)
    report = longer.maintain(uri)
    assert report["retention_updated"] is True and report["compacted"]["files_removed"] >= 3
    assert report["vacuumed_files"] == 0  # compacted-away files are inside retention: still time-travelable
    assert report["files_after"] == 1 and report["checkpoint_version"] == report["version"]
    assert longer.read(uri, version=0).num_rows == 1 and longer.read(uri).num_rows == 4
    keys = s3_server.list_keys(uri.removeprefix(f"s3://{s3_server.bucket}/"))
    assert any(k.endswith(f"{report['version']:020d}.checkpoint.parquet") for k in keys)
    history = longer.history(uri)
    assert history[-1]["sync_type"] == "snapshot"
    with pytest.raises(VersionNotAvailableError):
        longer.read(uri, as_of=datetime.now(UTC) - timedelta(days=1))


def _writer(uri: str, writer: int, rounds: int, env: dict[str, str], start: mp.Event) -> None:
    """Child process: merge ``rounds`` batches of disjoint keys into the shared table."""
    os.environ.update(env)
    catalog = DeltaCatalog(root_uri=uri.rsplit("/", 3)[0], storage_options=CLIENT_OPTIONS,
                           commit_retry_attempts=15, commit_retry_backoff_seconds=0.05)
    start.wait(30)
    for r in range(rounds):
        ids = [f"w{writer}-r{r}-{k}" for k in range(5)]
        catalog.merge(uri, videos(ids, [r] * 5), key=["id"],
                      commit_info={"lake.run_id": f"writer-{writer}"})


def test_s3_two_writers_commit_without_lost_rows(catalog: DeltaCatalog, s3_server: S3Server) -> None:
    uri = catalog.table_uri("bronze", "tiktok", "videos")
    rounds = 4
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(uri, w, rounds, s3_server.env(), start)) for w in (1, 2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(90)
    assert [p.exitcode for p in procs] == [0, 0]
    ids = catalog.read(uri, columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 2 * rounds * 5
    assert set(ids) == {f"w{w}-r{r}-{k}" for w in (1, 2) for r in range(rounds) for k in range(5)}
    hist = catalog.history(uri)
    assert [h["version"] for h in hist] == list(range(2 * rounds - 1, -1, -1))  # one commit per merge
    assert sorted(h["run_id"] for h in hist) == ["writer-1"] * rounds + ["writer-2"] * rounds
    assert sum(h["inserted"] for h in hist) == 2 * rounds * 5
