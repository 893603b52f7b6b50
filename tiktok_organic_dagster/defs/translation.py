"""Naming hooks: how each asset of a source is keyed, grouped, tagged and described in Dagster.

The builder names every asset after its table's place (``[layer, folder, table]``, see ``assets``). A
translator may rename or relabel each one; it gets the default spec and a ``TableAsset`` saying which
table the asset is. The component's ``translation`` attribute is such a translator, made of templates
(the way dagster-sling and dagster-dlt map streams to keys): every template sees ``stream``, ``table``,
``layer``, ``folder``, ``source``, ``history`` and the default ``spec``, besides ``env``.

Translation only names Dagster assets: the Delta tables stay where the settings put them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class TableAsset:
    """Which table an asset is: a stream's table or its daily history."""

    source: str  # the source's name
    stream: str  # user_info, videos
    table: str  # the Delta table's name, prefix included (``tt_videos``, ``tt_videos_history``)
    layer: str
    folder: str
    history: bool

    def template_vars(self) -> dict[str, Any]:
        return {"source": self.source, "stream": self.stream, "table": self.table, "layer": self.layer,
                "folder": self.folder, "history": self.history}


Translator = Callable[[dg.AssetSpec, TableAsset], dg.AssetSpec]

TEMPLATE_VARS = ("stream", "table", "layer", "folder", "source", "history", "spec")


class TranslationModel(BaseModel):
    """``translation`` in defs.yaml: templates applied to each asset; unset = the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | list[str] | None = Field(
        default=None, description="Asset key, 'a/b/{{ table }}' or a list of parts. Default: [layer, folder, table]."
    )
    group_name: str | None = Field(default=None, description="Asset group. Default: the source's name.")
    tags: dict[str, str] | None = Field(
        default=None, description="Tags added to the defaults (source, stream); a template per value."
    )
    owners: list[str] | None = Field(default=None, description="Owners (team:x or an email), replace the default.")
    kinds: list[str] | None = Field(default=None, description="Kinds, replace the default [tiktok, deltalake].")
    description: str | None = Field(
        default=None, description="Description; '{{ spec.description }}' is the default one."
    )


def _key(value: Any) -> dg.AssetKey:
    if isinstance(value, dg.AssetKey):
        return value
    if isinstance(value, str):
        return dg.AssetKey.from_user_string(value.strip())
    if isinstance(value, list | tuple) and value and all(isinstance(part, str) for part in value):
        return dg.AssetKey([str(part) for part in value])
    raise ValueError(f"translation.key must render a string 'a/b/c' or a list of strings, got {value!r}")


def _strings(value: Any, field: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple | set):
        return [str(v) for v in value]
    raise ValueError(f"translation.{field} must render a list of strings, got {value!r}")


class TemplateTranslation:
    """A ``TranslationModel`` rendered for each asset with the component's resolution context (so ``env``
    is in scope and errors point at the line of defs.yaml)."""

    def __init__(self, model: TranslationModel, context: dg.ResolutionContext) -> None:
        self._templates = model.model_dump(exclude_none=True)
        self._context = context.at_path("translation")

    def __call__(self, spec: dg.AssetSpec, asset: TableAsset) -> dg.AssetSpec:
        scope = self._context.with_scope(**asset.template_vars(), spec=spec)
        values = {name: scope.at_path(name).resolve_value(raw) for name, raw in self._templates.items()}
        replace: dict[str, Any] = {}
        if "key" in values:
            replace["key"] = _key(values["key"])
        if "group_name" in values:
            replace["group_name"] = str(values["group_name"])
        if "owners" in values:
            replace["owners"] = _strings(values["owners"], "owners")
        if "kinds" in values:
            replace["kinds"] = set(_strings(values["kinds"], "kinds"))
        if "description" in values:
            replace["description"] = str(values["description"])
        if replace:
            spec = spec.replace_attributes(**replace)
        if "tags" in values:
            spec = spec.merge_attributes(tags={str(k): str(v) for k, v in values["tags"].items()})
        return spec
