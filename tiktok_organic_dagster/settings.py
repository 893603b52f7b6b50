"""Source settings: what a hosted connector asks for, validated when the code location loads.

Settings come from a YAML file (path in ``TIKTOK_ORGANIC_CONFIG``) that may declare several sources (one per
TikTok account), or, without a file, from environment variables for one source named ``tiktok_organic``.
Validation happens at load time so ``dagster definitions validate`` fails with the setting's name instead of
a run failing at 6 a.m.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tiktok_organic_dagster.names import CONFIG_ENV, DEFAULT_SOURCE_NAME
from tiktok_organic_dagster.tiktok.streams import STREAM_NAMES as STREAMS

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_SOURCE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SettingsError(ValueError):
    """A setting is invalid; the message names the setting and says what to do."""


class SyncType(str, Enum):
    FULL_TABLE = "FULL_TABLE"
    INCREMENTAL = "INCREMENTAL"


class _Strict(BaseModel):
    # Unknown keys are typos more often than not: refuse them instead of silently ignoring a setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str, what: str, allow_empty: bool = False) -> str:
    if value == "" and allow_empty:
        return value
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid name: use letters, digits, '_' or '-' "
            "(no '/', '..' or spaces), so the table stays inside the Delta root"
        )
    return value


def _check_cron(value: str) -> str:
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a valid cron expression (five fields, e.g. '0 6 * * *')")
    return value


def cron_period(cron: str, timezone_name: str) -> timedelta:
    """Longest gap between consecutive ticks over the next few weeks (irregular crons included)."""
    start = datetime.now(zoneinfo.ZoneInfo(timezone_name))
    ticks = croniter(cron, start)
    times = [ticks.get_next(datetime) for _ in range(60)]
    return max(b - a for a, b in zip(times, times[1:], strict=False))


class StreamSettings(_Strict):
    layer: str = "raw"
    folder: str = DEFAULT_SOURCE_NAME
    table_name: str = ""
    sync_type: SyncType = SyncType.FULL_TABLE
    lookback_days: int = Field(default=7, ge=0, le=3650)
    refresh_all_counters: bool = False
    # API fields to request beyond the documented set we map (e.g. `is_aigc`, new in 2026); TikTok answers
    # invalid_params for a field it does not know, so new fields are opt-in. They land as new columns.
    extra_fields: tuple[str, ...] = ()

    @field_validator("extra_fields")
    @classmethod
    def _valid_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [f for f in value if not re.match(r"^[a-z][a-z0-9_]*$", f)]
        if bad:
            raise ValueError(f"{bad} are not API field names (lowercase letters, digits, '_')")
        return value

    @field_validator("layer", "folder")
    @classmethod
    def _valid_part(cls, value: str, info: ValidationInfo) -> str:
        return _check_name(value, str(info.field_name))

    @field_validator("table_name")
    @classmethod
    def _valid_table(cls, value: str) -> str:
        return _check_name(value, "table_name", allow_empty=True)


class CredentialSettings(_Strict):
    """Names of the environment variables that hold the secrets, never the secrets themselves."""

    client_id_env: str = "TIKTOK_CLIENT_ID"
    client_secret_env: str = "TIKTOK_CLIENT_SECRET"
    refresh_token_env: str = "TIKTOK_REFRESH_TOKEN"

    @field_validator("client_id_env", "client_secret_env", "refresh_token_env")
    @classmethod
    def _valid_env_name(cls, value: str) -> str:
        if not _ENV_NAME_RE.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value


class TriggerSettings(_Strict):
    cron: str = "0 6 * * *"
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return _check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _valid_tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r} (use an IANA name, e.g. 'Europe/Berlin')") from exc
        return value


class FullSyncSettings(_Strict):
    enabled: bool = True
    cron: str = "0 3 * * 0"
    grace_hours: float = Field(default=6.0, ge=0)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return _check_cron(value)


def _default_streams() -> dict[str, StreamSettings]:
    return {
        "user_info": StreamSettings(sync_type=SyncType.FULL_TABLE),
        "videos": StreamSettings(sync_type=SyncType.INCREMENTAL),
    }


class SourceSettings(_Strict):
    name: str = DEFAULT_SOURCE_NAME
    description: str = Field(default="TikTok organic profile and videos", max_length=140)
    credentials: CredentialSettings = Field(default_factory=CredentialSettings)
    streams: dict[str, StreamSettings] = Field(default_factory=_default_streams)
    table_prefix: str = ""
    trigger: TriggerSettings = Field(default_factory=TriggerSettings)
    full_sync: FullSyncSettings = Field(default_factory=FullSyncSettings)
    delta_log_retention_days: int = Field(default=30, ge=1, le=36500)

    @field_validator("name")
    @classmethod
    def _valid_source_name(cls, value: str) -> str:
        if not _SOURCE_NAME_RE.match(value):
            raise ValueError(f"{value!r} must be lowercase letters, digits and '_' (it prefixes job names)")
        return value

    @field_validator("table_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        return _check_name(value, "table_prefix", allow_empty=True)

    @field_validator("streams")
    @classmethod
    def _known_streams(cls, value: dict[str, StreamSettings]) -> dict[str, StreamSettings]:
        unknown = sorted(set(value) - set(STREAMS))
        if unknown:
            raise ValueError(f"unknown stream(s) {unknown}; available streams are {list(STREAMS)}")
        if not value:
            raise ValueError(f"select at least one stream of {list(STREAMS)}")
        return value

    def table_name(self, stream: str) -> str:
        return self.table_prefix + (self.streams[stream].table_name or stream)

    def asset_key_path(self, stream: str, suffix: str = "") -> list[str]:
        """Asset key = the table's place in the catalog: [layer, folder, prefix+table]."""
        cfg = self.streams[stream]
        return [cfg.layer, cfg.folder, self.table_name(stream) + suffix]


class ProjectSettings(_Strict):
    sources: list[SourceSettings]

    @model_validator(mode="after")
    def _unique(self) -> ProjectSettings:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        seen: dict[tuple[str, ...], str] = {}
        for src in self.sources:
            for stream in src.streams:
                for suffix in ("", "_history"):
                    key = tuple(src.asset_key_path(stream, suffix))
                    if key in seen:
                        raise ValueError(
                            f"sources {seen[key]!r} and {src.name!r} both write table {'/'.join(key)}: "
                            "give one a different folder or table_prefix"
                        )
                    seen[key] = src.name
        return self


# Environment variables that configure the default source when no settings file is used.
_ENV_MAP: dict[str, tuple[str, ...]] = {
    "TIKTOK_SOURCE_DESCRIPTION": ("description",),
    "TIKTOK_STREAMS": ("streams",),
    "TIKTOK_TABLE_PREFIX": ("table_prefix",),
    "TIKTOK_LAYER": ("_all_streams", "layer"),
    "TIKTOK_FOLDER": ("_all_streams", "folder"),
    "TIKTOK_USER_INFO_SYNC_TYPE": ("streams", "user_info", "sync_type"),
    "TIKTOK_VIDEOS_SYNC_TYPE": ("streams", "videos", "sync_type"),
    "TIKTOK_VIDEOS_LOOKBACK_DAYS": ("streams", "videos", "lookback_days"),
    "TIKTOK_REFRESH_ALL_COUNTERS": ("streams", "videos", "refresh_all_counters"),
    "TIKTOK_VIDEOS_EXTRA_FIELDS": ("streams", "videos", "extra_fields"),
    "TIKTOK_SYNC_CRON": ("trigger", "cron"),
    "TIKTOK_SYNC_TIMEZONE": ("trigger", "timezone"),
    "TIKTOK_FULL_SYNC_CRON": ("full_sync", "cron"),
    "TIKTOK_FULL_SYNC_ENABLED": ("full_sync", "enabled"),
    "TIKTOK_DELTA_LOG_RETENTION_DAYS": ("delta_log_retention_days",),
}


def _source_from_env(env: dict[str, str]) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": DEFAULT_SOURCE_NAME}
    selected = [s.strip() for s in env.get("TIKTOK_STREAMS", ",".join(STREAMS)).split(",") if s.strip()]
    defaults = _default_streams()
    raw["streams"] = {s: defaults[s].model_dump() if s in defaults else {} for s in selected}
    for var, path in _ENV_MAP.items():
        if var not in env or path == ("streams",):
            continue
        value: Any = env[var]
        if path[-1] == "extra_fields":
            value = [f.strip() for f in value.split(",") if f.strip()]
        if path[0] == "_all_streams":
            for stream_cfg in raw["streams"].values():
                stream_cfg[path[1]] = value
        elif path[0] == "streams":
            if path[1] in raw["streams"]:
                raw["streams"][path[1]][path[2]] = value
        elif len(path) == 2:
            raw.setdefault(path[0], {})[path[1]] = value
        else:
            raw[path[0]] = value
    return raw


def _format_error(exc: ValidationError, origin: str, env_source: bool) -> str:
    lines = [f"Invalid TikTok source settings ({origin}):"]
    reverse = {path: var for var, path in _ENV_MAP.items()}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if loc and loc[0] == "sources":
            loc = loc[2:]
        setting = ".".join(loc) or "settings"
        hint = ""
        if env_source:
            var = reverse.get(tuple(loc)) or (
                "TIKTOK_STREAMS" if loc[:1] == ["streams"] and len(loc) <= 2 else None
            )
            if var is None and len(loc) >= 3 and loc[0] == "streams":
                var = {"layer": "TIKTOK_LAYER", "folder": "TIKTOK_FOLDER"}.get(loc[2])
            hint = f" (environment variable {var})" if var else ""
        lines.append(f"  - {setting}{hint}: {err['msg']}")
    return "\n".join(lines)


def load_settings(env: dict[str, str] | None = None) -> ProjectSettings:
    """Read the settings file named by TIKTOK_ORGANIC_CONFIG, or build the default source from env vars."""
    env = dict(os.environ if env is None else env)
    path = env.get(CONFIG_ENV)
    if path:
        file = Path(path)
        if not file.is_file():
            raise SettingsError(f"{CONFIG_ENV}={path!r}: no such settings file")
        try:
            raw = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SettingsError(f"{CONFIG_ENV}={path!r} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict) or not isinstance(raw.get("sources"), list):
            raise SettingsError(f"{path}: expected a mapping with a 'sources' list (see README, Settings)")
        try:
            return ProjectSettings.model_validate(raw)
        except ValidationError as exc:
            # Errors inside one source name that source, so agencies with many accounts find the culprit.
            for i, src in enumerate(raw["sources"]):
                try:
                    SourceSettings.model_validate(src)
                except ValidationError as inner:
                    name = src.get("name", f"#{i + 1}") if isinstance(src, dict) else f"#{i + 1}"
                    raise SettingsError(_format_error(inner, f"{path}, source {name}", False)) from None
            raise SettingsError(_format_error(exc, path, False)) from None
    try:
        return ProjectSettings(sources=[SourceSettings.model_validate(_source_from_env(env))])
    except ValidationError as exc:
        raise SettingsError(_format_error(exc, "environment variables", True)) from None
