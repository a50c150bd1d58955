"""Pick each model's batch size by measuring it at warm-up.

The best batch size depends on model, device, kernels and cache sizes: on a GPU larger batches
win; on a small CPU, MobileNetV2 runs fastest at batch 4 with oneDNN (1-2 without) and slows down
by 40% at batch 16 once the activations leave the cache. Measuring beats guessing.
"""

import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

BatchRunner = Callable[[int], object]


def candidate_sizes(cap: int) -> list[int]:
    """1, 2, 4, ... up to `cap`, and `cap` itself."""
    return sorted({1 << power for power in range(cap.bit_length())} | {cap})


def measure_batch_rates(
    run: BatchRunner,
    sizes: list[int],
    budget_s: float,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[int, float]:
    """Images/s at each size (each already warmed up); stops once sizes clearly get worse."""
    rates: dict[int, float] = {}
    for size in sizes:
        calls, started = 0, clock()
        while calls < 2 or clock() - started < budget_s:
            run(size)
            calls += 1
        rates[size] = size * calls / (clock() - started)
        if rates[size] < 0.6 * max(rates.values()):
            break
    return rates


def best_batch_size(rates: dict[int, float], tolerance: float = 0.03) -> int:
    """The smallest size within `tolerance` of the best rate: same throughput, less latency."""
    best = max(rates.values())
    return min(size for size, rate in rates.items() if rate >= best * (1 - tolerance))
