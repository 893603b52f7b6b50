"""The component's attributes: the settings file's ``SourceSettings`` model, subclassed, plus ``translation``,
``token_store`` and ``delta_root``. One model, so a defs.yaml and the settings file share names, defaults,
validators and their messages.

``dg check defs`` checks a defs.yaml twice: first against the model's JSON schema (structure), then by
loading it through the model (the settings' validators: cron, names, streams). Each error names its path.
Both say what is allowed: the schema reports an unknown key as "not one of [the allowed names]" (JSON
Schema's own message only says it "was unexpected"), leaves a length limit to the model ("at most 140
characters" rather than "is too long") and accepts sync types in any case, as the settings do; loading
reports an unknown key with the settings file's did-you-mean. (dg 1.13 schema-checks only one defs.yaml per
component type, so with two sources the second check is the one that catches most mistakes.)
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, model_validator

from tiktok_organic_dagster.defs.translation import TEMPLATE_VARS, TranslationModel
from tiktok_organic_dagster.names import DEFAULT_DELTA_ROOT, DELTA_ROOT_ENV, TOKEN_STORE_ENV
from tiktok_organic_dagster.settings import SourceSettings, SyncType
from tiktok_organic_dagster.settings.load import setting_message
from tiktok_organic_dagster.tiktok.streams import STREAM_NAMES


class TikTokOrganicAttributes(SourceSettings):
    """defs.yaml ``attributes``: one source's settings (the settings file's model) and where its state lives."""

    translation: TranslationModel = Field(
        default_factory=TranslationModel,
        description="Templates for each asset's key, group_name, tags, owners, kinds and description; in scope: "
        + ", ".join(TEMPLATE_VARS) + ", env.",
    )
    token_store: str | None = Field(
        default=None,
        description="Where rotated refresh tokens are kept (a file or object-store URL); may use {{ env.X }}. "
        f"Unset: ${TOKEN_STORE_ENV}, then the local default.",
    )
    delta_root: str | None = Field(
        default=None,
        description="Root of the Delta tables (a path or object-store URL); may use {{ env.X }}. "
        f"Unset: ${DELTA_ROOT_ENV}, then ./{DEFAULT_DELTA_ROOT}.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _unknown_keys_say_what_is_allowed(cls, data: Any, handler: Any) -> Any:
        """Pydantic says only 'Extra inputs are not permitted'; with an unknown key, every error of the
        attributes is reported as the settings file reports it ('unknown setting, did you mean ...?'), each
        with its path. (Other errors keep pydantic's form, which dg shows with the line of each.)"""
        try:
            return handler(data)
        except ValidationError as exc:
            errors = exc.errors()
            if not any(err["type"] == "extra_forbidden" for err in errors):
                raise
            lines = []
            for err in errors:
                loc = [str(part) for part in err["loc"]]
                lines.append(f"{'.'.join(loc)}: {setting_message(err, loc, cls)}")
            raise ValueError("; ".join(lines)) from None

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The schema ``dg check`` validates a defs.yaml against (see the module's docstring)."""
        schema = super().model_json_schema(*args, **kwargs)
        for node in (schema, *schema.get("$defs", {}).values()):
            _say_what_is_allowed(node)
        streams = schema.get("properties", {}).get("streams")
        if isinstance(streams, dict):
            streams["propertyNames"] = {"enum": list(STREAM_NAMES)}
        sync_type = schema.get("$defs", {}).get(SyncType.__name__)
        if sync_type is not None:
            names = "|".join(t.value for t in SyncType)
            schema["$defs"][SyncType.__name__] = {
                "title": SyncType.__name__, "type": "string", "examples": [t.value for t in SyncType],
                "pattern": f"(?i)^\\s*({names})\\s*$",
            }
        return schema

    def source_settings(self) -> SourceSettings:
        """The source alone, as the settings file would hold it."""
        return SourceSettings.model_validate(self.model_dump(include=set(SourceSettings.model_fields),
                                                             exclude_unset=True))


def _say_what_is_allowed(node: dict[str, Any]) -> None:
    properties = node.get("properties")
    if isinstance(properties, dict) and node.get("additionalProperties") is False:
        del node["additionalProperties"]
        node["propertyNames"] = {"enum": list(properties)}
    for prop in (properties or {}).values():
        if isinstance(prop, dict):
            prop.pop("maxLength", None)
