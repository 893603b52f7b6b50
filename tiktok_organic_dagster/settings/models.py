"""The settings models of a source and their validation (loading and messages are in ``settings.load``).

``layer`` and ``folder`` are source settings that every stream inherits unless it sets its own; their
defaults (``raw``, ``tiktok_organic``) are the same for every source whatever its name, so a source's table
paths never move when it is renamed or when these settings are added to an existing configuration.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tiktok_organic_dagster.names import DEFAULT_SOURCE_NAME
from tiktok_organic_dagster.tiktok.streams import STREAM_NAMES as STREAMS

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_SOURCE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SyncType(str, Enum):
    FULL_TABLE = "FULL_TABLE"
    INCREMENTAL = "INCREMENTAL"


def closest(word: str, choices: list[str]) -> str | None:
    """The choice a typo most likely meant, if any is close enough."""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return match[0] if match else None


def did_you_mean(word: str, choices: list[str]) -> str:
    match = closest(word, choices)
    return f"did you mean {match}?" if match else f"expected one of {', '.join(choices)}"


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


DEFAULT_LAYER = "raw"
DEFAULT_FOLDER = DEFAULT_SOURCE_NAME  # the same for every source: a source's name never moves its tables


class _Placed(_Strict):
    """Where tables go: ``<root>/<layer>/<folder>/...``."""

    layer: str = DEFAULT_LAYER
    folder: str = DEFAULT_FOLDER

    @field_validator("layer", "folder")
    @classmethod
    def _valid_part(cls, value: str, info: ValidationInfo) -> str:
        return _check_name(value, str(info.field_name))

    @field_validator("table_name", "table_prefix", check_fields=False)  # a stream's name, a source's prefix
    @classmethod
    def _valid_table_part(cls, value: str, info: ValidationInfo) -> str:
        return _check_name(value, str(info.field_name), allow_empty=True)


class StreamSettings(_Placed):
    # layer/folder unset here = the source's (filled in by SourceSettings before validation)
    table_name: str = ""
    sync_type: SyncType = SyncType.FULL_TABLE
    lookback_days: int = Field(default=7, ge=0, le=3650)
    refresh_all_counters: bool = False
    # API fields to request beyond the documented set we map (e.g. `is_aigc`, new in 2026); TikTok answers
    # invalid_params for a field it does not know, so new fields are opt-in. They land as new columns.
    extra_fields: tuple[str, ...] = ()
    # videos: time slices a full sync pages at once (1 = one cursor walk, as every sequential connector does);
    # each slice's requests count against the same per-endpoint budget. user_info makes one request.
    paging_parallelism: int = Field(default=24, ge=1, le=64)

    @field_validator("sync_type", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        if not isinstance(value, str) or isinstance(value, SyncType):
            return value
        try:
            return SyncType(value.strip().upper())
        except ValueError:
            raise ValueError(f"{value!r} is not a sync type: use {' or '.join(t.value for t in SyncType)} "
                             "(any case)") from None

    @field_validator("extra_fields")
    @classmethod
    def _valid_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [f for f in value if not re.match(r"^[a-z][a-z0-9_]*$", f)]
        if bad:
            raise ValueError(f"{bad} are not API field names (lowercase letters, digits, '_')")
        return value


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


class AccountSettings(_Strict):
    """One TikTok account of a multi-account source: a partition of the source's assets."""

    name: str
    # None: the account's token is already in the token store (``tiktok-organic-accounts add`` or authorize)
    refresh_token_env: str | None = None

    @field_validator("name")
    @classmethod
    def _valid_account_name(cls, value: str) -> str:
        if not _SOURCE_NAME_RE.match(value):
            raise ValueError(f"account {value!r} must be lowercase letters, digits and '_', starting with a "
                             "letter (it is a partition key and a token store entry)")
        return value

    @field_validator("refresh_token_env")
    @classmethod
    def _valid_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME_RE.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value


def default_streams() -> dict[str, StreamSettings]:
    return {
        "user_info": StreamSettings(sync_type=SyncType.FULL_TABLE),
        "videos": StreamSettings(sync_type=SyncType.INCREMENTAL),
    }


class SourceSettings(_Placed):
    # layer, folder: every stream's unless the stream sets its own
    name: str = DEFAULT_SOURCE_NAME
    description: str = Field(default="TikTok organic profile and videos", max_length=140)
    credentials: CredentialSettings = Field(default_factory=CredentialSettings)
    streams: dict[str, StreamSettings] = Field(default_factory=default_streams)
    table_prefix: str = ""
    trigger: TriggerSettings = Field(default_factory=TriggerSettings)
    full_sync: FullSyncSettings = Field(default_factory=FullSyncSettings)
    delta_log_retention_days: int = Field(default=30, ge=1, le=36500)
    # Present (even empty): the source's assets are partitioned by account (accounts added with
    # `tiktok-organic-accounts add` need no entry here). Absent: one account, today's unpartitioned tables.
    accounts: tuple[AccountSettings, ...] | None = None
    max_parallel_accounts: int = Field(default=4, ge=1, le=256)  # the app's pool: runs of its accounts at once
    requests_per_minute: int = Field(default=600, ge=1, le=1_000_000)  # the app's limit per endpoint
    # the limit's sliding window: TikTok's is a minute (a shorter one is for sandboxes and benchmarks)
    rate_window_seconds: float = Field(default=60.0, gt=0, le=3600)

    @property
    def partitioned(self) -> bool:
        return self.accounts is not None

    def account(self, name: str) -> AccountSettings | None:
        return next((a for a in self.accounts or () if a.name == name), None)

    @field_validator("accounts")
    @classmethod
    def _unique_accounts(cls, value: tuple[AccountSettings, ...] | None) -> tuple[AccountSettings, ...] | None:
        names = [a.name for a in value or ()]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"account names must be unique within a source; listed twice: {doubled}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _streams_inherit_place(cls, data: Any) -> Any:
        """A stream without its own layer/folder gets the source's (an invalid source value is reported once,
        at the source, and not copied into the streams)."""
        if not isinstance(data, dict):
            return data
        streams = data.get("streams", default_streams())
        if not isinstance(streams, dict):
            return data
        inherited = {part: data[part] for part in ("layer", "folder")
                     if isinstance(data.get(part), str) and _NAME_RE.match(data[part])}
        filled: dict[Any, Any] = {}
        for stream, cfg in streams.items():
            if isinstance(cfg, StreamSettings):
                cfg = cfg.model_dump(exclude_unset=True)
            filled[stream] = {**inherited, **cfg} if isinstance(cfg, dict) else cfg
        return {**data, "streams": filled}

    @field_validator("name")
    @classmethod
    def _valid_source_name(cls, value: str) -> str:
        if not _SOURCE_NAME_RE.match(value):
            raise ValueError(f"{value!r} must be lowercase letters, digits and '_' (it prefixes job names)")
        return value

    @field_validator("streams")
    @classmethod
    def _known_streams(cls, value: dict[str, StreamSettings]) -> dict[str, StreamSettings]:
        unknown = sorted(set(value) - set(STREAMS))
        if unknown:
            raise ValueError("; ".join(f"unknown stream {s!r}, {did_you_mean(s, list(STREAMS))}" for s in unknown))
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
