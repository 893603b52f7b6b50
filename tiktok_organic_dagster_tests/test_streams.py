"""Record conversion: documented types, unknown fields kept, missing fields null, wrong types named."""

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from tiktok_organic_dagster.sync.errors import ApiFieldError
from tiktok_organic_dagster.sync.records import records_to_table
from tiktok_organic_dagster.tiktok.streams import TS, VIDEO_FIELDS


def test_types_unknown_and_missing_fields():
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)
    table = records_to_table(
        [{"id": "7000000000000000001", "create_time": 1_700_000_000, "view_count": 2**40, "brand_new": {"a": 1}},
         {"id": "7000000000000000002", "title": "t"}],
        VIDEO_FIELDS, {"_synced_at": now},
    )
    assert table.schema.field("id").type == pa.string()
    assert table.schema.field("view_count").type == pa.int64()
    assert table.schema.field("create_time").type == TS
    rows = table.to_pylist()
    assert rows[0]["create_time"] == datetime.fromtimestamp(1_700_000_000, timezone.utc)
    assert rows[0]["view_count"] == 2**40 and rows[1]["view_count"] is None
    assert rows[0]["brand_new"] == '{"a": 1}' and rows[1]["brand_new"] is None
    assert rows[1]["title"] == "t" and rows[0]["title"] is None
    assert {r["_synced_at"] for r in rows} == {now}


def test_wrong_type_names_the_field_and_record():
    with pytest.raises(ApiFieldError, match=r"'like_count' of record 7000000000000000009"):
        records_to_table([{"id": "7000000000000000009", "like_count": "many"}], VIDEO_FIELDS)
