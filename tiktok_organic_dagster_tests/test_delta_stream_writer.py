"""The streamed overwrite's own Parquet writer: what it commits must be what delta-rs itself would commit."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from tiktok_organic_dagster.lake import DeltaCatalog
from tiktok_organic_dagster.lake import stream_writer as delta_stream_writer
from tiktok_organic_dagster.lake.stream_writer import write_files

UTC = timezone.utc
T0 = datetime(2026, 1, 1, tzinfo=UTC)
STAT_COLUMNS = ("id", "create_time", "view_count", "title")


def sample(n: int, start: int = 0) -> pa.Table:
    ids = [f"74{i + start:017d}" for i in range(n)]
    return pa.table({
        "id": pa.array(ids, pa.string()),
        "create_time": pa.array([T0 - timedelta(hours=i) for i in range(n)], pa.timestamp("us", "UTC")),
        "title": pa.array([None if i % 7 == 0 else f"video {i}" for i in range(n)], pa.string()),
        "view_count": pa.array([(i * 37) % 1000 for i in range(n)], pa.int64()),
        "share_url": pa.array([f"https://www.tiktok.com/@acme/video/{i}?" + "q" * 80 for i in range(n)]),
    })


def add_stats(uri: str) -> list[dict]:
    """The stats of every add action in the table's log, as the log stores them."""
    out = []
    for log in sorted(Path(uri, "_delta_log").glob("*.json")):
        for line in log.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                out.append(json.loads(action["add"]["stats"]))
    return out


def test_statistics_match_what_delta_rs_writes(tmp_path: Path) -> None:
    data = sample(500)
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    DeltaCatalog(root_uri=str(tmp_path)).overwrite(ours, data.to_reader(max_chunksize=64), key=["id"], commit_info={})
    write_deltalake(theirs, data)
    [mine], [reference] = add_stats(ours), add_stats(theirs)
    assert mine["numRecords"] == reference["numRecords"] == 500
    assert mine["nullCount"] == reference["nullCount"]
    for column in STAT_COLUMNS:
        assert mine["minValues"][column] == reference["minValues"][column], column
        assert mine["maxValues"][column] == reference["maxValues"][column], column
    # a maximum longer than 64 characters cannot be truncated without lying: it is left out
    assert "share_url" not in mine["maxValues"] and len(mine["minValues"]["share_url"]) == 64
    # and delta-rs parses them: typed statistics for the catalog's max_value and row_count
    catalog = DeltaCatalog(root_uri=str(tmp_path))
    assert catalog.max_value(ours, "create_time") == T0
    assert catalog.row_count(ours) == 500


def test_files_rotate_and_every_row_group_is_bounded(tmp_path: Path) -> None:
    data = sample(2500)
    uri = str(tmp_path / "t")
    Path(uri).mkdir()
    actions = write_files(uri, None, data.schema, data.to_batches(max_chunksize=100), rows_per_group=300,
                          rows_per_file=1000)
    assert [json.loads(a.stats)["numRecords"] for a in actions] == [1200, 1200, 100]
    for action in actions:
        meta = pq.ParquetFile(Path(uri, action.path)).metadata
        assert action.size == Path(uri, action.path).stat().st_size
        assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= 300
    assert not Path(uri, "_delta_log").exists()  # nothing is committed by the writer itself


def test_streamed_overwrite_skips_files_by_its_statistics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = DeltaCatalog(root_uri=str(tmp_path))
    uri = catalog.table_uri("bronze", "tiktok", "videos")
    catalog.overwrite(uri, sample(10), key=["id"], commit_info={})
    monkeypatch.setattr(delta_stream_writer, "ROWS_PER_FILE", 500)
    monkeypatch.setattr(delta_stream_writer, "ROWS_PER_GROUP", 250)
    result = catalog.overwrite(uri, lambda: sample(2000).to_reader(max_chunksize=250), key=["id"],
                               commit_info={"lake.run_id": "r-files"})
    assert (result.version, result.rows_written, result.inserted, result.updated, result.deleted) == (1, 2000, 1990,
                                                                                                       10, 0)
    table = DeltaTable(uri)
    assert len(table.file_uris()) == 4
    newest = pc.field("create_time") >= pa.scalar(T0 - timedelta(hours=99), pa.timestamp("us", "UTC"))
    fragments = list(table.to_pyarrow_dataset().get_fragments(filter=newest))
    assert len(fragments) == 1  # min/max of create_time let the reader skip three of the four files
    assert catalog.read(uri, filter=newest).num_rows == 100
    history = catalog.history(uri, limit=1)[0]
    assert history["run_id"] == "r-files" and history["inserted"] == 1990 and history["deleted"] == 0


def test_empty_stream_leaves_an_empty_table_with_the_schema(tmp_path: Path) -> None:
    catalog = DeltaCatalog(root_uri=str(tmp_path))
    uri = catalog.table_uri("bronze", "tiktok", "videos")
    catalog.overwrite(uri, sample(3), key=["id"], commit_info={})
    empty = sample(0)
    result = catalog.overwrite(uri, pa.RecordBatchReader.from_batches(empty.schema, iter([])), key=["id"],
                               commit_info={})
    assert (result.rows_written, result.deleted) == (0, 3)
    out = catalog.read(uri)
    assert out.num_rows == 0 and out.schema.names == empty.schema.names


def test_a_long_string_only_drops_the_maximum_it_would_truncate(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    Path(uri).mkdir()
    first = pa.table({"s": ["a" * 100, "b"]})
    second = pa.table({"s": ["zz", "c" * 90]})
    batches = [*first.to_batches(), *second.to_batches()]
    [action] = write_files(uri, None, first.schema, batches, rows_per_group=2)
    stats = json.loads(action.stats)
    assert stats["maxValues"] == {"s": "zz"}  # the real maximum is short: kept, though a batch had long values
    assert stats["minValues"] == {"s": "a" * 64}  # a prefix is still a valid minimum
    longest_last = pa.table({"s": ["b", "z" * 70]})
    [action] = write_files(uri, None, longest_last.schema, longest_last.to_batches())
    assert "s" not in json.loads(action.stats)["maxValues"]
