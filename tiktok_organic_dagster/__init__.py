"""Keep a TikTok account's organic data in Delta Lake with Dagster.

``defs`` is re-exported so ``dagster ... -m tiktok_organic_dagster`` finds the code location.
"""

from tiktok_organic_dagster.definitions import defs

__all__ = ["defs"]
