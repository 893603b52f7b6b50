"""Arrow's memory pool: the package picks the system allocator before pyarrow starts, unless the user chose
one (why: ``sync/memory.py``). Each case runs in a fresh interpreter: the pool is fixed once pyarrow loads."""

from __future__ import annotations

import os
import subprocess
import sys

from tiktok_organic_dagster.sync.memory import POOL_ENV

PROBE = ("import tiktok_organic_dagster.lake, pyarrow as pa, pyarrow.compute as pc; "
         "a = pc.add(pa.array(list(range(1000))), 1); "
         "print(pa.default_memory_pool().backend_name, a.buffers()[1].address != 0)")


def _backend(env_value: str | None, probe: str = PROBE) -> str:
    env = {k: v for k, v in os.environ.items() if k != POOL_ENV}
    if env_value is not None:
        env[POOL_ENV] = env_value
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    return out.stdout.strip()


def test_the_package_makes_the_system_allocator_arrows_default_pool() -> None:
    assert _backend(None) == "system True"


def test_a_pool_the_user_chose_is_kept() -> None:
    assert _backend("mimalloc").split()[0] == "mimalloc"


def test_pyarrow_loaded_before_the_package_still_gets_the_system_pool_for_syncs() -> None:
    """Another library imported pyarrow first: the sync switches pyarrow's own default pool."""
    probe = ("import pyarrow as pa; import tiktok_organic_dagster.sync.memory as m; "
             "before = pa.default_memory_pool().backend_name; m.use_system_pool(); "
             "print(before, pa.default_memory_pool().backend_name)")
    assert _backend(None, probe) == "mimalloc system"
