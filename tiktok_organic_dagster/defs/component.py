"""``TikTokOrganicComponent``: one TikTok source as a Dagster component, for any ``dg`` project.

``dg scaffold defs tiktok_organic_dagster.TikTokOrganicComponent <path>`` writes a defs.yaml (see
``scaffold``); its ``attributes`` are one source of the settings file, validated by the same model
(``SourceSettings``, so names, defaults and messages are the settings file's), plus ``translation``
(asset naming templates), ``token_store`` and ``delta_root`` (both may use ``{{ env.X }}``). Secrets are
never attributes: ``credentials`` names the environment variables that hold them.

The component builds exactly what the settings file builds for that source (``build_source_definitions``),
so several instances in one project are several sources: each needs its own ``name`` (it prefixes jobs,
schedules, the sensor and resources) and its own tables (``folder`` or ``table_prefix``). The executor is
the project's: a component does not set one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
from pydantic import BaseModel

from tiktok_organic_dagster.defs.attributes import TikTokOrganicAttributes
from tiktok_organic_dagster.defs.definitions import build_source_definitions
from tiktok_organic_dagster.defs.scaffold import TikTokOrganicScaffolder
from tiktok_organic_dagster.defs.translation import TemplateTranslation, Translator
from tiktok_organic_dagster.names import OWNERS
from tiktok_organic_dagster.settings import SourceSettings


def _render(context: dg.ResolutionContext, name: str, value: str | None) -> str | None:
    """A path attribute with its ``{{ env.X }}`` templates rendered; an unset variable leaves it unset."""
    if value is None:
        return None
    rendered = context.at_path(name).resolve_value(value)
    if rendered is None or rendered == "":
        return None
    if not isinstance(rendered, str):
        raise ValueError(f"{name} must render a path or URL, got {rendered!r}")
    return rendered


@dg.scaffold_with(TikTokOrganicScaffolder)
@dataclass
class TikTokOrganicComponent(dg.Component, dg.Resolvable):
    """One TikTok account's profile and videos kept in Delta Lake: assets, checks, jobs, schedules, a sensor.

    Attributes are one source of the settings file (see the README, Settings) plus ``translation``,
    ``token_store`` and ``delta_root``. Set TIKTOK_CLIENT_ID, TIKTOK_CLIENT_SECRET and TIKTOK_REFRESH_TOKEN
    (or the variables ``credentials`` names).
    """

    source: SourceSettings = field(default_factory=SourceSettings)
    translate: Translator | None = None
    token_store: str | None = None
    delta_root: str | None = None

    @classmethod
    def get_spec(cls) -> dg.ComponentTypeSpec:
        return dg.ComponentTypeSpec(owners=list(OWNERS), tags=["tiktok", "deltalake"],
                                    produces=["asset", "asset_check", "job", "schedule", "sensor", "resource"])

    @classmethod
    def model(cls) -> type[BaseModel]:
        """The YAML schema is the settings model itself (subclassed), not one derived from these fields, so
        defs.yaml and the settings file share names, defaults and validators."""
        return TikTokOrganicAttributes

    @classmethod
    def resolve_from_model(cls, context: dg.ResolutionContext, model: BaseModel) -> TikTokOrganicComponent:
        attributes = TikTokOrganicAttributes.model_validate(model)
        templates = attributes.translation
        translate = TemplateTranslation(templates, context) if templates.model_dump(exclude_none=True) else None
        return cls(source=attributes.source_settings(), translate=translate,
                   token_store=_render(context, "token_store", attributes.token_store),
                   delta_root=_render(context, "delta_root", attributes.delta_root))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_source_definitions(self.source, translate=self.translate, delta_root=self.delta_root,
                                        token_store=self.token_store)
