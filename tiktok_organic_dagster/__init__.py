"""Keep TikTok accounts' organic data in Delta Lake with Dagster.

Rooms, imports one way (each may import the ones after it, never the ones before):

- ``defs/``: the Dagster definitions, the only place that imports dagster;
- ``cli/``: command-line tools (authorize, demo, dev);
- ``sync/``: what one stream's sync does, plain results;
- ``settings``: the source settings (a hosted connector's form), validated;
- ``tiktok/``: the TikTok API client (plain Python) and the stream registry; ``lake/``: Delta tables, no
  TikTok words;
- ``names``: every name given to things outside Python.

``sandbox/`` is the fake TikTok API for demos and tests; product code never imports it.

Importing the package builds nothing and reads no settings: ``definitions`` (what ``dagster ... -m
tiktok_organic_dagster`` loads) and ``TikTokOrganicComponent`` (the ``dg`` component, for any project) are
resolved on first access. It sets one default: Arrow's memory pool, which must be chosen before pyarrow
starts (``ARROW_DEFAULT_MEMORY_POOL=system`` unless set; why: ``sync/memory.py``).
"""

import os
from typing import Any

os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # sync.memory.POOL_ENV, before pyarrow loads

_LAZY = {
    "definitions": ("tiktok_organic_dagster.defs.definitions", "defs"),
    # the dg component (registered for `dg list components` by the entry point in setup.py)
    "TikTokOrganicComponent": ("tiktok_organic_dagster.defs.component", "TikTokOrganicComponent"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
