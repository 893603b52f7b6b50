"""Data checks. Blocking checks run on the batch before the commit: a bad batch writes nothing and reports the
failed check (API mocked at the HTTP boundary with `responses`: the sandbox never serves negative counters).
The warn-only history check flags counters that went down between a key's last two snapshots.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import pyarrow as pa
import responses

from tiktok_organic_dagster.names import FULL_SYNC_JOB, SYNC_JOB, SYNC_OP
from tiktok_organic_dagster.sync.checks import count_decreases
from tiktok_organic_dagster_tests.fixtures_faults import failed_steps, failure_text, snapshot
from tiktok_organic_dagster_tests.helpers import run_job

BASE = "http://tiktok.test"
USER = {"open_id": "open-1", "union_id": "u-1", "avatar_url": "a", "avatar_url_100": "a", "avatar_large_url": "a",
        "display_name": "Acme", "bio_description": "", "profile_deep_link": "l", "is_verified": False,
        "username": "acme", "follower_count": 10, "following_count": 1, "likes_count": 5, "video_count": 3}


def _video(i: int, views: int) -> dict:
    return {"id": f"74000000000000000{i:02d}", "create_time": 1_760_000_000 - i * 3600, "title": f"v{i}",
            "like_count": 1, "comment_count": 0, "share_count": 0, "view_count": views}


def _mock_api(mock: responses.RequestsMock, views: list[int]) -> None:
    ok = {"code": "ok", "message": "", "log_id": "20260101000000ABC"}
    mock.add(responses.POST, f"{BASE}/v2/oauth/token/",
             json={"access_token": "act.test-access-0001", "refresh_token": "rft.test-refresh-0002",
                   "expires_in": 86400, "refresh_expires_in": 31536000, "open_id": "open-1"})
    mock.add(responses.GET, f"{BASE}/v2/user/info/", json={"data": {"user": USER}, "error": ok})
    mock.add(responses.POST, f"{BASE}/v2/video/list/",
             json={"data": {"videos": [_video(i, v) for i, v in enumerate(views)], "cursor": 0, "has_more": False},
                   "error": ok})


def test_negative_counter_stops_the_write_and_reports_the_check(tmp_path):
    env = {"TIKTOK_API_BASE_URL": BASE, "TIKTOK_CLIENT_ID": "client-1", "TIKTOK_CLIENT_SECRET": "secret-1",
           "TIKTOK_REFRESH_TOKEN": "rft.test-refresh-0001", "TIKTOK_DELTA_ROOT": str(tmp_path / "lake"),
           "TIKTOK_TOKEN_STORE": str(tmp_path / "tokens.json")}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        _mock_api(mock, [100, 200, 300])
        assert run_job(SYNC_JOB, env).success
    before = snapshot(env)
    assert len(before["videos"][1]) == 3

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        _mock_api(mock, [150, -5, 300])  # one counter went negative
        result = run_job(FULL_SYNC_JOB, env, raise_on_error=False)
    assert not result.success
    assert failed_steps(result) == {SYNC_OP}
    assert "non_negative_counters" in failure_text(result) and "nothing was written" in failure_text(result)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()
                   if e.asset_key == dg.AssetKey(["raw", "tiktok_organic", "videos"])}
    assert not evaluations["non_negative_counters"].passed
    assert evaluations["non_negative_counters"].metadata["negative_view_count"].value == 1
    assert evaluations["unique_non_null_key"].passed
    after = snapshot(env)
    assert {t: after[t] for t in ("videos", "videos_history")} == {
        t: before[t] for t in ("videos", "videos_history")}  # same version, same rows
    assert after["user_info"][0] == before["user_info"][0] + 1  # the other stream still synced


def test_count_decreases_compares_each_keys_last_two_snapshots():
    d1, d2, d3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)
    history = pa.table({
        "id": ["a", "a", "a", "b", "b", "c"],
        "snapshot_date": [d1, d2, d3, d1, d2, d1],
        # a: 5 -> 1 (old drop) -> 9: latest pair grows; b: drop in latest pair; c: a single snapshot
        "view_count": [5, 1, 9, 10, 7, 3],
        "like_count": [1, 2, None, 4, 4, 0],
    })
    assert count_decreases(history, "id", ("view_count", "like_count")) == {"view_count": 1, "like_count": 0}
    assert count_decreases(history.slice(0, 0), "id", ("view_count",)) == {"view_count": 0}
    shuffled = history.take([5, 3, 0, 4, 2, 1])  # order of rows in the table must not matter
    assert count_decreases(shuffled, "id", ("view_count", "like_count")) == {"view_count": 1, "like_count": 0}
    assert count_decreases(history.slice(3, 2), "id", ("view_count",)) == {"view_count": 1}  # b alone
    assert count_decreases(history.slice(0, 2), "id", ("view_count",)) == {"view_count": 1}  # a: 5 -> 1


def test_monotonic_check_warns_when_views_drop_between_days(tmp_path):
    from datetime import date

    import dagster as dg
    import pyarrow as pa

    from tiktok_organic_dagster.defs.checks import build_monotonic_check
    from tiktok_organic_dagster.defs.resources import DeltaCatalogResource
    from tiktok_organic_dagster.lake import DeltaCatalog

    catalog = DeltaCatalog(root_uri=str(tmp_path))
    resource = DeltaCatalogResource(root_uri=str(tmp_path))
    path = ("raw", "tiktok_organic", "videos_history")
    uri = catalog.table_uri(*path)

    def day(d, views):
        return pa.table({"id": pa.array(["a", "b"]), "snapshot_date": pa.array([d, d], pa.date32()),
                         "view_count": pa.array(views, pa.int64())})

    catalog.snapshot_merge(uri, day(date(2026, 11, 23), [100, 50]), key=["id"], commit_info={})
    catalog.snapshot_merge(uri, day(date(2026, 11, 24), [120, 40]), key=["id"], commit_info={})
    check = build_monotonic_check(dg.AssetKey(list(path)), path, "cat", "id", ("view_count",))
    context = dg.build_asset_check_context(resources={"cat": resource})
    result = check(context)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["decreased_view_count"].value == 1
    catalog.snapshot_merge(uri, day(date(2026, 11, 25), [130, 60]), key=["id"], commit_info={})
    assert check(dg.build_asset_check_context(resources={"cat": resource})).passed


def test_newest_snapshot_dates_bounded_by_file_statistics(tmp_path):
    from datetime import date, timedelta

    from tiktok_organic_dagster.lake import DeltaCatalog
    from tiktok_organic_dagster.sync.checks import newest_snapshot_dates

    catalog = DeltaCatalog(root_uri=str(tmp_path))
    uri = catalog.table_uri("raw", "tiktok_organic", "videos_history")
    d0 = date(2026, 11, 1)

    def days(*offsets: int) -> pa.Table:
        return pa.table({"id": pa.array([f"v{i}" for i in offsets]),
                         "snapshot_date": pa.array([d0 + timedelta(days=i) for i in offsets], pa.date32()),
                         "view_count": pa.array([1] * len(offsets), pa.int64())})

    catalog.snapshot_merge(uri, days(0, 1, 2, 3), key=["id"], commit_info={})  # one file spanning 4 days
    assert newest_snapshot_dates(catalog, uri, 2) == [d0 + timedelta(days=2), d0 + timedelta(days=3)]
    catalog.snapshot_merge(uri, days(9), key=["id"], commit_info={})
    # file ranges are (d0, d3) and (d9, d9): d3, inside the first file, is the second-newest day
    assert catalog.file_ranges(uri, "snapshot_date") is not None
    assert newest_snapshot_dates(catalog, uri, 2) == [d0 + timedelta(days=3), d0 + timedelta(days=9)]
    assert newest_snapshot_dates(catalog, uri, 1) == [d0 + timedelta(days=9)]
    assert newest_snapshot_dates(catalog, uri, 9) == [d0 + timedelta(days=i) for i in (0, 1, 2, 3, 9)]
