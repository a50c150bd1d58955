"""Give memory back to the OS after large uploads (glibc only; elsewhere these do nothing).

Measured cause (README, Hardening): a 32 x 19 MiB request left ~600 MB resident for good.
glibc raises its mmap threshold to the size of the largest block freed (up to 32 MiB), so
after the first big upload every 19 MiB buffer came from the heap arenas, one arena per
decode thread, and freed heap memory is not returned. A fixed threshold keeps big buffers in
mmap (returned on free), fewer arenas bound the rest, and malloc_trim returns free pages.
"""

import ctypes
import ctypes.util
import logging
from functools import cache

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 1024 * 1024
ARENA_MAX = 2


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune_allocator() -> bool:
    """Fix the mmap threshold and bound the arenas; False where the C library is not glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    libc.mallopt(_M_TRIM_THRESHOLD, MMAP_THRESHOLD_BYTES)
    libc.mallopt(_M_ARENA_MAX, ARENA_MAX)
    logger.info("allocator: mmap threshold %d bytes, %d arenas", MMAP_THRESHOLD_BYTES, ARENA_MAX)
    return True


def release_free_memory() -> None:
    """Return free heap pages of every arena to the OS (takes milliseconds; run off-loop)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
