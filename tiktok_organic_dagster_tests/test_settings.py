"""Settings: defaults from the environment, YAML with several sources, and errors that name the setting."""

import textwrap

import pytest

from tiktok_organic_dagster.settings import SettingsError, SyncType, load_settings


def test_defaults_without_settings_file():
    settings = load_settings({})
    [src] = settings.sources
    assert src.name == "tiktok_organic"
    assert set(src.streams) == {"user_info", "videos"}
    assert src.streams["user_info"].sync_type is SyncType.FULL_TABLE
    assert src.streams["videos"].sync_type is SyncType.INCREMENTAL
    assert src.streams["videos"].lookback_days == 7
    assert src.asset_key_path("videos") == ["raw", "tiktok_organic", "videos"]
    assert src.full_sync.enabled and src.delta_log_retention_days == 30
    assert src.credentials.refresh_token_env == "TIKTOK_REFRESH_TOKEN"


def test_env_overrides_apply():
    src = load_settings(
        {"TIKTOK_STREAMS": "videos", "TIKTOK_TABLE_PREFIX": "acme_", "TIKTOK_VIDEOS_SYNC_TYPE": "FULL_TABLE",
         "TIKTOK_SYNC_CRON": "0 */4 * * *", "TIKTOK_DELTA_LOG_RETENTION_DAYS": "9"}
    ).sources[0]
    assert list(src.streams) == ["videos"]
    assert src.table_name("videos") == "acme_videos"
    assert src.streams["videos"].sync_type is SyncType.FULL_TABLE
    assert src.trigger.cron == "0 */4 * * *" and src.delta_log_retention_days == 9


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TIKTOK_SOURCE_DESCRIPTION": "x" * 141}, "description"),
        ({"TIKTOK_STREAMS": "user_info,comments"}, "streams"),
        ({"TIKTOK_SYNC_CRON": "every day"}, "trigger.cron"),
        ({"TIKTOK_FULL_SYNC_CRON": "61 * * * *"}, "full_sync.cron"),
        ({"TIKTOK_DELTA_LOG_RETENTION_DAYS": "-1"}, "delta_log_retention_days"),
        ({"TIKTOK_SYNC_TIMEZONE": "Mars/Olympus"}, "trigger.timezone"),
        ({"TIKTOK_FOLDER": "../escape"}, "folder"),
        ({"TIKTOK_TABLE_PREFIX": "a/b"}, "table_prefix"),
    ],
)
def test_bad_env_settings_name_the_setting(env, named):
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert named in str(err.value)


def test_description_of_140_is_fine():
    assert len(load_settings({"TIKTOK_SOURCE_DESCRIPTION": "x" * 140}).sources[0].description) == 140


def _write(tmp_path, text):
    path = tmp_path / "sources.yaml"
    path.write_text(textwrap.dedent(text))
    return {"TIKTOK_ORGANIC_CONFIG": str(path)}


def test_yaml_with_two_accounts(tmp_path):
    env = _write(tmp_path, """
        sources:
          - name: brand_a
            description: Brand A main account
            credentials: {client_id_env: A_ID, client_secret_env: A_SECRET, refresh_token_env: A_REFRESH}
            table_prefix: brand_a_
          - name: brand_b
            streams:
              videos: {sync_type: FULL_TABLE, folder: brand_b}
            trigger: {cron: "30 5 * * *", timezone: Europe/Berlin}
            full_sync: {enabled: false}
            delta_log_retention_days: 14
        """)
    a, b = load_settings(env).sources
    assert a.credentials.refresh_token_env == "A_REFRESH"
    assert a.table_name("videos") == "brand_a_videos"
    assert list(b.streams) == ["videos"] and b.streams["videos"].folder == "brand_b"
    assert b.trigger.timezone == "Europe/Berlin" and not b.full_sync.enabled


def test_yaml_errors_name_source_and_setting(tmp_path):
    env = _write(tmp_path, """
        sources:
          - name: good
          - name: bad_one
            streams:
              videos: {sync_type: SOMETIMES}
        """)
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert "bad_one" in str(err.value) and "streams.videos.sync_type" in str(err.value)


def test_yaml_unknown_key_and_table_collision(tmp_path):
    env = _write(tmp_path, "sources:\n  - name: a\n    retention: 3\n")
    with pytest.raises(SettingsError, match="retention"):
        load_settings(env)
    env = _write(tmp_path, "sources:\n  - name: a\n  - name: b\n")
    with pytest.raises(SettingsError, match="both write table raw/tiktok_organic/"):
        load_settings(env)


def test_missing_settings_file(tmp_path):
    with pytest.raises(SettingsError, match="TIKTOK_ORGANIC_CONFIG"):
        load_settings({"TIKTOK_ORGANIC_CONFIG": str(tmp_path / "nope.yaml")})
