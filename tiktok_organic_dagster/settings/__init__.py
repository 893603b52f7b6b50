"""Source settings: what a hosted connector asks for, validated when the code location loads.

Settings come from a YAML file (path in ``TIKTOK_ORGANIC_CONFIG``) that may declare several sources (one per
TikTok account), or, without a file, from environment variables for one source named ``tiktok_organic``.
Validation happens at load time so ``dagster definitions validate`` fails with the setting's name instead of
a run failing at 6 a.m. The models are in ``models``, loading and messages in ``load``.
"""

from tiktok_organic_dagster.settings.load import SettingsError, ignored_env_vars, load_settings
from tiktok_organic_dagster.settings.models import (
    DEFAULT_FOLDER,
    DEFAULT_LAYER,
    AccountSettings,
    CredentialSettings,
    FullSyncSettings,
    ProjectSettings,
    SourceSettings,
    StreamSettings,
    SyncType,
    TriggerSettings,
    cron_period,
)

__all__ = [
    "AccountSettings", "DEFAULT_FOLDER", "DEFAULT_LAYER", "CredentialSettings", "FullSyncSettings", "ProjectSettings",
    "SettingsError",
    "SourceSettings", "StreamSettings", "SyncType", "TriggerSettings", "cron_period", "ignored_env_vars",
    "load_settings",
]
