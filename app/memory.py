"""Give memory back to the OS after large uploads (glibc only; elsewhere these do nothing).

Measured cause (README, Hardening): a 32 x 19 MiB request left ~600 MB resident for good.
glibc raises its mmap threshold to the size of the largest block freed (up to 32 MiB), so
after the first big upload every 19 MiB buffer came from the heap arenas, one arena per
thread, and freed heap memory is not returned until `malloc_trim` is called. So
`release_free_memory` runs after every large body, and the arenas are bounded.

The bound is per core, not 2 in all (sessions 4-9): each core runs about two threads that
allocate on every image (an inference worker and a decode thread) beside the event loop and
helpers, and with 2 arenas they queued on the arena locks. `/segment` at c=32 on 2 cores, five
paired 20 s windows: 41.3 ms of CPU per image with 2 arenas, 36.1 with 8 (45.8 against 52.9
images/s, medians); after 20 rounds of 32 x 19 MiB uploads RSS was still below its baseline
with 8 (`python -m bench.stress --probes memory`: 918 MB against 1,146), since `malloc_trim`
returns what the arenas free.

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
ARENAS_PER_CORE = 4
_tuned_arenas: int | None = None  # what `tune_allocator` set, for `allocator_plan`


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune_allocator(cores: int) -> bool:
    """Bound the arenas to `ARENAS_PER_CORE` per core of this process; False where the C
    library is not glibc."""
    global _tuned_arenas  # noqa: PLW0603 - the process's allocator is process-wide state too
    libc = _libc()
    if libc is None:
        return False
    _tuned_arenas = ARENAS_PER_CORE * max(1, cores)
    libc.mallopt(_M_ARENA_MAX, _tuned_arenas)
    logger.info("allocator: %d arenas", _tuned_arenas)
    return True


def allocator_plan() -> str:
    """What `tune_allocator` set up: tuning measurements depend on it, so their keys hold it."""
    if _libc() is None:
        return "not glibc"
    arenas = "glibc's own arenas" if _tuned_arenas is None else f"{_tuned_arenas} arenas"
    return f"glibc, {arenas}, glibc's own mmap threshold"


def release_free_memory() -> None:
    """Return free heap pages of every arena to the OS (takes milliseconds; run off-loop)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
