"""Give memory back to the OS after large uploads (glibc only; elsewhere these do nothing).

Measured cause (README, Hardening): a 32 x 19 MiB request left ~600 MB resident for good.
glibc raises its mmap threshold to the size of the largest block freed (up to 32 MiB), so
after the first big upload every 19 MiB buffer came from the heap arenas, one arena per
thread, and freed heap memory is not returned until `malloc_trim` is called. So: fewer
arenas bound the heap, and `release_free_memory` runs after every large body.

The mmap threshold itself is left to glibc on purpose. Fixing it low (1 MiB was tried) put
every activation tensor of a forward pass in a fresh mapping that is faulted in page by page
and unmapped when freed: 4,700 page faults per MobileNetV2 image, 10,000-12,000 per segmented
image, and 1.7-2.1x the inference time (`bench/allocator.py`).
"""

import ctypes
import ctypes.util
import logging
from functools import cache

logger = logging.getLogger(__name__)

_M_ARENA_MAX = -8
ARENA_MAX = 2


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune_allocator() -> bool:
    """Bound the arenas; False where the C library is not glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.mallopt(_M_ARENA_MAX, ARENA_MAX)
    logger.info("allocator: %d arenas", ARENA_MAX)
    return True


def allocator_plan() -> str:
    """What `tune_allocator` sets up: tuning measurements depend on it, so their keys hold it."""
    if _libc() is None:
        return "not glibc"
    return f"glibc, {ARENA_MAX} arenas, glibc's own mmap threshold"


def release_free_memory() -> None:
    """Return free heap pages of every arena to the OS (takes milliseconds; run off-loop)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
