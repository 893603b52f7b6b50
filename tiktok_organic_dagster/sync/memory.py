"""Where a sync's Arrow buffers come from, and handing freed memory back to the OS between phases.

A full sync's working set moves from phase to phase (paging, conversion, the streamed write, the history
merge), and each phase frees what the one before held. Arrow's default pool in the pyarrow wheels
(mimalloc) keeps freed pages in its heaps for reuse, so every phase's peak stacks on the leftovers of the
ones before: the run's high-water mark becomes close to the sum of the phases rather than the largest one.
The system allocator returns large blocks when they are freed and ``release_unused`` trims the rest
(glibc's ``malloc_trim``).

Arrow picks its pool once, when pyarrow starts, from ``ARROW_DEFAULT_MEMORY_POOL``; so the package's
``__init__`` sets that default before anything imports pyarrow, and a value the user set is kept. When
pyarrow started earlier (another library imported it first), ``use_system_pool`` switches the pool that
pyarrow's own calls use; Arrow's C++ internals then keep the first pool.
"""

from __future__ import annotations

import os

import pyarrow as pa

POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"
SYSTEM = "system"


def use_system_pool() -> None:
    """Make sure the pool asked for in ``POOL_ENV`` (the system one, unless the user chose) is in use."""
    if os.environ.get(POOL_ENV) == SYSTEM and pa.default_memory_pool().backend_name != SYSTEM:
        pa.set_memory_pool(pa.system_memory_pool())


def release_unused() -> None:
    """Hand the pool's cached blocks back to the OS (between phases of a sync)."""
    pa.default_memory_pool().release_unused()
