"""Several accounts (TikTok users) of the one sandbox app: their names, seeds and generated data.

Account 1 always uses the base seed, so its data is exactly what a single-account sandbox with the same
config serves. Later accounts get a seed derived from the base seed and their index, and their video ids
are drawn so that they never collide with an earlier account's (ids are unique across the app).
"""

from __future__ import annotations

import re

from .config import SandboxConfig
from .data import Account

ACCOUNT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")  # the project's source/account name rule
_SEED_STRIDE = 1_000_003  # a prime: derived seeds of neighbouring base seeds do not overlap for N < 10^6


def account_names(config: SandboxConfig) -> list[str]:
    """``config.account_names`` if given, else ``account_1 ... account_N``; ValueError when invalid."""
    names = list(config.account_names)
    if names:
        if config.accounts not in (1, len(names)):
            raise ValueError(f"accounts={config.accounts} but {len(names)} account_names given")
        bad = [n for n in names if not isinstance(n, str) or not ACCOUNT_NAME_RE.match(n)]
        if bad:
            raise ValueError(f"account names {bad} must be lowercase letters, digits and '_', starting with a "
                             "letter")
        if len(set(names)) != len(names):
            raise ValueError(f"account names must be unique: {names}")
        return names
    if config.accounts < 1:
        raise ValueError(f"accounts must be >= 1, got {config.accounts}")
    return [f"account_{i}" for i in range(1, config.accounts + 1)]


def account_seed(seed: int, index: int) -> int:
    """Seed of the account at ``index`` (0-based): the base seed itself for the first account."""
    return seed if index == 0 else seed * _SEED_STRIDE + index


def build_accounts(config: SandboxConfig, client_key: str) -> dict[str, Account]:
    """Generate every account's profile and videos, in name order; ids are unique across accounts."""
    out: dict[str, Account] = {}
    for index, name in enumerate(account_names(config)):
        out[name] = Account(
            config.video_count, account_seed(config.seed, index), config.anchor_time,
            config.missing_field_every, client_key, same_second_every=config.same_second_every,
            label=name if index else None, peers=list(out.values()),
        )
    everyone = list(out.values())
    for acc in everyone:
        acc.peers = [p for p in everyone if p is not acc]  # add() checks ids against all the others
    return out
