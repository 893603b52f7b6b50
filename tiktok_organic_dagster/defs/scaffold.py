"""``dg scaffold defs tiktok_organic_dagster.TikTokOrganicComponent <path>``: a defs.yaml that shows every
attribute, commented, at its default, under a header naming the environment variables to set.

Only ``name`` is written out (a defs.yaml needs one attribute): ``--name``, else the folder's name when it
is a valid source name, else the default. Defaults come from the model, so the file cannot drift from it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from pydantic import BaseModel, Field

from tiktok_organic_dagster.defs.attributes import TikTokOrganicAttributes
from tiktok_organic_dagster.names import (
    API_BASE_URL_ENV,
    CLIENT_ID_ENV,
    CLIENT_SECRET_ENV,
    DEFAULT_SOURCE_NAME,
    DELTA_ROOT_ENV,
    OWNERS,
    REFRESH_TOKEN_ENV,
    TOKEN_STORE_ENV,
)

_SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

HEADER = f"""\
# A TikTok account's organic data (profile, videos, daily counters) kept in Delta Lake.
#
# Set these environment variables where the code location and its runs start (secrets are never
# attributes; `credentials` below names the variables):
#   {CLIENT_ID_ENV}, {CLIENT_SECRET_ENV}   the TikTok app's client key and secret
#   {REFRESH_TOKEN_ENV}   the account's refresh token (or store one with `tiktok-organic-authorize`)
# Optional: {DELTA_ROOT_ENV} (default ./data/lakehouse), {TOKEN_STORE_ENV}, {API_BASE_URL_ENV}.
#
# Every attribute is shown at its default: uncomment a line to change it. A second source in the same
# project needs its own `name` and its own tables (`folder` or `table_prefix`).
"""

# One line each, next to the attribute; the settings' meanings are in the README (Settings).
_HINTS = {
    "name": "prefixes jobs, schedules, the sensor and resources",
    "description": "at most 140 characters",
    "credentials": "names of the environment variables holding the secrets",
    "layer": "every stream's unless the stream sets its own",
    "streams": "the streams to sync; sync_type FULL_TABLE or INCREMENTAL",
    "trigger": "the regular sync's schedule",
    "full_sync": "an additional periodic FULL_TABLE sync",
    "translation": "templates; in scope: stream, table, layer, folder, source, history, spec, env",
    "token_store": f"may use {{{{ env.X }}}}; unset: ${TOKEN_STORE_ENV}, then the local default",
    "delta_root": f"may use {{{{ env.X }}}}; unset: ${DELTA_ROOT_ENV}, then ./data/lakehouse",
}

# The defaults as templates: what each asset gets when `translation` is unset.
DEFAULT_TRANSLATION = {
    "key": "{{ layer }}/{{ folder }}/{{ table }}",
    "group_name": "{{ source }}",
    "tags": {"source": "{{ source }}", "stream": "{{ stream }}"},
    "owners": list(OWNERS),
    "kinds": ["tiktok", "deltalake"],
    "description": "{{ spec.description }}",
}


class ScaffoldParams(BaseModel):
    name: str | None = Field(default=None, description="The source's name (default: the folder's name).")


def _defaults(name: str) -> dict[str, Any]:
    values = TikTokOrganicAttributes(name=name).model_dump(mode="json")
    inherited = {"layer", "folder"}  # a stream's own value would pin it: show them at the source only
    values["streams"] = {stream: {k: v for k, v in cfg.items() if k not in inherited}
                         for stream, cfg in values["streams"].items()}
    values["translation"] = DEFAULT_TRANSLATION
    return values


def _commented(key: str, value: Any) -> list[str]:
    text = yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=False, width=100).rstrip("\n")
    lines = [f"  # {line}" for line in text.splitlines()]
    if key in _HINTS:
        lines[0] += f"   # {_HINTS[key]}"
    if key == "streams":  # stays a comment when the block is uncommented
        lines.append("  # # a stream may also set layer and folder; unset, it takes the source's")
    return lines


def defs_yaml(type_name: str, name: str = DEFAULT_SOURCE_NAME) -> str:
    """The scaffolded defs.yaml: valid as written, each default one uncommented line away."""
    values = _defaults(name)
    lines = [HEADER, f"type: {type_name}", "", "attributes:",
             f"  name: {yaml.safe_dump(values.pop('name')).splitlines()[0]}   # {_HINTS['name']}"]
    for key, value in values.items():
        lines += _commented(key, value)
    return "\n".join(lines) + "\n"


def source_name_for(path: Path, requested: str | None) -> str:
    if requested:
        return requested
    folder = path.name.lower().replace("-", "_")
    return folder if _SOURCE_NAME.match(folder) else DEFAULT_SOURCE_NAME


class TikTokOrganicScaffolder(dg.Scaffolder[ScaffoldParams]):
    @classmethod
    def get_scaffold_params(cls) -> type[ScaffoldParams]:
        return ScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[ScaffoldParams]) -> None:
        name = source_name_for(request.target_path, request.params.name if request.params else None)
        if request.scaffold_format != "yaml" or request.append:
            dg.scaffold_component(request, {"name": name})
            return
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(defs_yaml(request.type_name, name))
