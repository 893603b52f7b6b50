"""Settings: defaults from the environment, YAML with several sources, and errors that name the setting."""

import os
import subprocess
import sys
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


# ------------------------------------------------------------------------------------- messages (issue 16)
def _error_lines(env):
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    return str(err.value).splitlines()


def test_unknown_keys_get_a_did_you_mean(tmp_path):
    env = _write(tmp_path, """
        sources:
          - name: a
            retention_dayz: 3
            trigger: {crn: "0 6 * * *"}
            streams:
              videos: {lookback_dayz: 3, colour: red}
        """)
    lines = _error_lines(env)
    assert lines[0] == f"Invalid TikTok source settings ({env['TIKTOK_ORGANIC_CONFIG']}, source a):"
    assert "  - streams.videos.lookback_dayz: unknown setting, did you mean lookback_days?" in lines
    assert "  - trigger.crn: unknown setting, did you mean cron?" in lines
    assert "  - retention_dayz: unknown setting, did you mean delta_log_retention_days?" in lines
    assert ("  - streams.videos.colour: unknown setting, expected one of layer, folder, table_name, sync_type, "
            "lookback_days, refresh_all_counters, extra_fields, paging_parallelism") in lines


def test_unknown_stream_and_top_level_key_get_a_did_you_mean(tmp_path):
    env = _write(tmp_path, "sources:\n  - name: a\n    streams: {vidoes: {}}\n")
    assert "  - streams: unknown stream 'vidoes', did you mean videos?" in _error_lines(env)
    env = _write(tmp_path, "source:\n  - name: a\n")
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert "expected a mapping with a 'sources' list (source: did you mean sources?)" in str(err.value)


def test_messages_carry_no_pydantic_prefix():
    lines = _error_lines({"TIKTOK_SYNC_CRON": "every day", "TIKTOK_FOLDER": "a/b"})
    assert lines == [
        "Invalid TikTok source settings (environment variables):",
        "  - folder (environment variable TIKTOK_FOLDER): folder 'a/b' is not a valid name: use letters, digits, "
        "'_' or '-' (no '/', '..' or spaces), so the table stays inside the Delta root",
        "  - trigger.cron (environment variable TIKTOK_SYNC_CRON): 'every day' is not a valid cron expression "
        "(five fields, e.g. '0 6 * * *')",
    ]
    assert not any("Value error" in line for line in lines)


@pytest.mark.parametrize("value", ["incremental", "Incremental", " INCREMENTAL "])
def test_sync_type_in_any_case(value, tmp_path):
    src = load_settings({"TIKTOK_USER_INFO_SYNC_TYPE": value}).sources[0]
    assert src.streams["user_info"].sync_type is SyncType.INCREMENTAL
    env = _write(tmp_path, f"sources:\n  - name: a\n    streams: {{videos: {{sync_type: '{value}'}}}}\n")
    assert load_settings(env).sources[0].streams["videos"].sync_type is SyncType.INCREMENTAL


def test_bad_sync_type_says_what_is_allowed():
    assert _error_lines({"TIKTOK_VIDEOS_SYNC_TYPE": "delta"})[1] == (
        "  - streams.videos.sync_type (environment variable TIKTOK_VIDEOS_SYNC_TYPE): 'delta' is not a sync type: "
        "use FULL_TABLE or INCREMENTAL (any case)")


def test_ignored_env_vars_are_named_in_a_warning(tmp_path, caplog):
    env = _write(tmp_path, "sources:\n  - name: a\n")
    path = env["TIKTOK_ORGANIC_CONFIG"]
    with caplog.at_level("WARNING", logger="tiktok_organic_dagster.settings"):
        load_settings({**env, "TIKTOK_CLIENT_ID": "id", "TIKTOK_DELTA_ROOT": "/x"})
        assert caplog.messages == []  # credentials and the Delta root apply with a settings file too
        settings = load_settings({**env, "TIKTOK_VIDEOS_SYNC_TYPE": "DELTA", "TIKTOK_SYNC_CRON": "bad"})
    assert settings.sources[0].trigger.cron == "0 6 * * *"
    assert caplog.messages == [
        f"TikTok settings: TIKTOK_ORGANIC_CONFIG={path} is used, so these environment variables are ignored: "
        f"TIKTOK_SYNC_CRON, TIKTOK_VIDEOS_SYNC_TYPE. Set them in {path} instead, or unset TIKTOK_ORGANIC_CONFIG "
        "to configure one source from TIKTOK_* variables."
    ]


def test_definitions_validate_shows_the_ignored_env_vars(tmp_path):
    """The warning must reach the user of `dagster definitions validate` (which swallows warnings.warn)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIKTOK_")}
    env.update(_write(tmp_path, "sources:\n  - name: a\n"), TIKTOK_SYNC_CRON="bad")
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m",
                           "tiktok_organic_dagster.defs.definitions"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "these environment variables are ignored: TIKTOK_SYNC_CRON." in proc.stderr


def test_folder_and_layer_of_a_source_apply_to_every_stream(tmp_path):
    env = _write(tmp_path, """
        sources:
          - name: brand_a
            folder: tiktok
            table_prefix: brand_a_
          - name: brand_b
            layer: bronze
            folder: tiktok_b
            streams:
              videos: {folder: videos_only}
              user_info: {}
        """)
    a, b = load_settings(env).sources
    assert [a.asset_key_path(s) for s in a.streams] == [["raw", "tiktok", "brand_a_user_info"],
                                                      ["raw", "tiktok", "brand_a_videos"]]
    assert b.asset_key_path("videos") == ["bronze", "videos_only", "videos"]  # a stream's own value wins
    assert b.asset_key_path("user_info") == ["bronze", "tiktok_b", "user_info"]
    src = load_settings({"TIKTOK_FOLDER": "tiktok", "TIKTOK_LAYER": "bronze"}).sources[0]
    assert {tuple(src.asset_key_path(s)[:2]) for s in src.streams} == {("bronze", "tiktok")}


def test_existing_configs_keep_their_table_paths(tmp_path):
    """The default folder is `tiktok_organic` for every source whatever its name (a public contract: the
    tables of a configuration written before source-level folders stay where they are)."""
    env = _write(tmp_path, """
        sources:
          - name: brand_a
            table_prefix: brand_a_
            streams:
              user_info: {sync_type: FULL_TABLE}
              videos: {sync_type: INCREMENTAL, layer: raw, folder: tiktok, table_name: videos}
        """)
    [a] = load_settings(env).sources
    assert a.asset_key_path("user_info") == ["raw", "tiktok_organic", "brand_a_user_info"]
    assert a.asset_key_path("videos") == ["raw", "tiktok", "brand_a_videos"]
    assert load_settings({}).sources[0].asset_key_path("user_info") == ["raw", "tiktok_organic", "user_info"]
