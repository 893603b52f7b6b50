"""Loading the settings: a YAML file (``TIKTOK_ORGANIC_CONFIG``) or ``TIKTOK_*`` variables, and the messages.

Messages: an unknown key gets a did-you-mean, pydantic's prefixes are dropped, each line names the setting
(and the environment variable behind it); with a settings file, the ``TIKTOK_*`` variables that would
configure the default source are ignored, and a logged warning names the ones that are set.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from tiktok_organic_dagster.names import CONFIG_ENV, DEFAULT_SOURCE_NAME
from tiktok_organic_dagster.settings.models import (
    ProjectSettings,
    SourceSettings,
    closest,
    default_streams,
    did_you_mean,
)
from tiktok_organic_dagster.tiktok.streams import STREAM_NAMES as STREAMS


class SettingsError(ValueError):
    """A setting is invalid; the message names the setting and says what to do."""


_log = logging.getLogger(__name__)

# Environment variables that configure the default source when no settings file is used.
_ENV_MAP: dict[str, tuple[str, ...]] = {
    "TIKTOK_SOURCE_DESCRIPTION": ("description",),
    "TIKTOK_STREAMS": ("streams",),
    "TIKTOK_TABLE_PREFIX": ("table_prefix",),
    "TIKTOK_LAYER": ("layer",),
    "TIKTOK_FOLDER": ("folder",),
    "TIKTOK_USER_INFO_SYNC_TYPE": ("streams", "user_info", "sync_type"),
    "TIKTOK_VIDEOS_SYNC_TYPE": ("streams", "videos", "sync_type"),
    "TIKTOK_VIDEOS_LOOKBACK_DAYS": ("streams", "videos", "lookback_days"),
    "TIKTOK_REFRESH_ALL_COUNTERS": ("streams", "videos", "refresh_all_counters"),
    "TIKTOK_VIDEOS_EXTRA_FIELDS": ("streams", "videos", "extra_fields"),
    "TIKTOK_VIDEOS_PAGING_PARALLELISM": ("streams", "videos", "paging_parallelism"),
    "TIKTOK_SYNC_CRON": ("trigger", "cron"),
    "TIKTOK_SYNC_TIMEZONE": ("trigger", "timezone"),
    "TIKTOK_FULL_SYNC_CRON": ("full_sync", "cron"),
    "TIKTOK_FULL_SYNC_ENABLED": ("full_sync", "enabled"),
    "TIKTOK_DELTA_LOG_RETENTION_DAYS": ("delta_log_retention_days",),
}


def _source_from_env(env: dict[str, str]) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": DEFAULT_SOURCE_NAME}
    selected = [s.strip() for s in env.get("TIKTOK_STREAMS", ",".join(STREAMS)).split(",") if s.strip()]
    defaults = default_streams()
    raw["streams"] = {s: defaults[s].model_dump(exclude_unset=True) if s in defaults else {} for s in selected}
    for var, path in _ENV_MAP.items():
        if var not in env or path == ("streams",):
            continue
        value: Any = env[var]
        if path[-1] == "extra_fields":
            value = [f.strip() for f in value.split(",") if f.strip()]
        if path[0] == "streams":
            if path[1] in raw["streams"]:
                raw["streams"][path[1]][path[2]] = value
        elif len(path) == 2:
            raw.setdefault(path[0], {})[path[1]] = value
        else:
            raw[path[0]] = value
    return raw


def _keys_at(loc: list[str], model: type[BaseModel]) -> list[str]:
    """The setting names allowed where ``loc`` (from ``model``) points, e.g. a stream's for
    ``streams.videos.lookback_dayz``; [] when the place is not a settings model."""
    i = 0
    while i < len(loc) - 1:
        field = model.model_fields.get(loc[i])
        if field is None:
            return []
        ann = field.annotation
        if get_origin(ann) is dict:
            ann, i = get_args(ann)[1], i + 1  # the next part is the dict's key (a stream's name)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model, i = ann, i + 1
    return list(model.model_fields)


def setting_message(err: Any, loc: list[str], model: type[BaseModel]) -> str:
    """Pydantic's message without its prefixes; a did-you-mean for an unknown key (the component's too)."""
    if err["type"] == "extra_forbidden" and loc:
        return f"unknown setting, {did_you_mean(loc[-1], _keys_at(loc, model))}"
    if err["type"] in ("value_error", "assertion_error") and "error" in err.get("ctx", {}):
        return str(err["ctx"]["error"])
    return str(err["msg"])


def _format_error(exc: ValidationError, origin: str, env_source: bool,
                  model: type[BaseModel] = SourceSettings) -> str:
    lines = [f"Invalid TikTok source settings ({origin}):"]
    reverse = {path: var for var, path in _ENV_MAP.items()}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        at: type[BaseModel] = model
        if model is ProjectSettings and len(loc) >= 2 and loc[0] == "sources":
            loc, at = loc[2:], SourceSettings
        setting = ".".join(loc) or "settings"
        hint = ""
        if env_source:
            var = reverse.get(tuple(loc)) or (
                "TIKTOK_STREAMS" if loc[:1] == ["streams"] and len(loc) <= 2 else None
            )
            hint = f" (environment variable {var})" if var else ""
        lines.append(f"  - {setting}{hint}: {setting_message(err, loc, at)}")
    return "\n".join(lines)


def ignored_env_vars(env: dict[str, str]) -> list[str]:
    """The ``TIKTOK_*`` source variables that are set; a settings file makes them all ignored."""
    return [var for var in _ENV_MAP if var in env]


def load_settings(env: dict[str, str] | None = None) -> ProjectSettings:
    """Read the settings file named by TIKTOK_ORGANIC_CONFIG, or build the default source from env vars."""
    env = dict(os.environ if env is None else env)
    path = env.get(CONFIG_ENV)
    if path:
        file = Path(path)
        if not file.is_file():
            raise SettingsError(f"{CONFIG_ENV}={path!r}: no such settings file")
        try:
            # libyaml's loader when installed: a settings file with 1,000 accounts parses in a fraction of the time
            raw = yaml.load(file.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        except yaml.YAMLError as exc:
            raise SettingsError(f"{CONFIG_ENV}={path!r} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict) or not isinstance(raw.get("sources"), list):
            typo = next((k for k in raw if k != "sources" and closest(str(k), ["sources"])), None) \
                if isinstance(raw, dict) else None
            hint = f" ({typo}: did you mean sources?)" if typo is not None else ""
            raise SettingsError(f"{path}: expected a mapping with a 'sources' list{hint} (see README, Settings)")
        ignored = ignored_env_vars(env)
        if ignored:
            # logging, not warnings.warn: Dagster's code loading swallows Python warnings, and this one must
            # show in `dagster definitions validate` and the code server's log
            _log.warning("TikTok settings: %s=%s is used, so these environment variables are ignored: %s. Set "
                         "them in %s instead, or unset %s to configure one source from TIKTOK_* variables.",
                         CONFIG_ENV, path, ", ".join(sorted(ignored)), path, CONFIG_ENV)
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
            raise SettingsError(_format_error(exc, path, False, ProjectSettings)) from None
    try:
        return ProjectSettings(sources=[SourceSettings.model_validate(_source_from_env(env))])
    except ValidationError as exc:
        raise SettingsError(_format_error(exc, "environment variables", True)) from None
