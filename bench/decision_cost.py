"""The per-image cost of a change to a model, paired: two model folders through one pipeline.

    python -m bench.decision_cost --before OLD/fashion-products --after models/fashion-products

Each side runs the service's own decode, preprocessing, forward pass and answer (for a calibrated
model: calibrated scores and the unknown score) on the benchmark photos, one thread, batches
of 8, in alternating timed blocks so that a noisy machine slows both alike. Prints the median
milliseconds per image of each side, the after/before ratio per pair (median and range), and
the hashing of the uploads that every answer now carries.
"""

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable
from itertools import cycle
from pathlib import Path

import torch

from app.runtime.loader import load_model
from app.runtime.optimize import optimize_for_cpu
from bench.ceiling import pipeline
from bench.photos import load_photos

_BATCH = 8


def main() -> None:
    """Alternate before/after blocks and print the paired figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="a model folder")
    parser.add_argument("--after", type=Path, required=True, help="a model folder")
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--block-s", type=float, default=1.0, help="seconds per timed block")
    args = parser.parse_args()
    torch.set_num_threads(1)
    photos = [data for _, data in load_photos()]
    sides = {name: _side(path) for name, path in (("before", args.before), ("after", args.after))}
    timings: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.pairs):
        for name, run in sides.items():
            timings[name].append(_ms_per_image(run, photos, args.block_s))
    ratios = [a / b for a, b in zip(timings["after"], timings["before"], strict=True)]
    for name, values in timings.items():
        spread = f"{min(values):.3f}-{max(values):.3f}"
        print(f"{name:7} {statistics.median(values):.3f} ms/image ({spread})")
    print(
        f"after/before {statistics.median(ratios):.3f} "
        f"({min(ratios):.3f}-{max(ratios):.3f}) over {args.pairs} pairs"
    )
    digest_ms = _ms_per_image(lambda batch: [hashlib.sha256(d).digest() for d in batch], photos, 1)
    print(f"sha256 of the uploads: {digest_ms:.3f} ms/image")


def _side(path: Path) -> Callable[[list[bytes]], object]:
    model = optimize_for_cpu(load_model(path, torch.device("cpu")))
    return pipeline(model)


def _ms_per_image(
    run: Callable[[list[bytes]], object], photos: list[bytes], block_s: float
) -> float:
    source = cycle(photos)
    run([next(source) for _ in range(_BATCH)])  # warm
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < block_s:
        run([next(source) for _ in range(_BATCH)])
        images += _BATCH
    return 1000 * (time.perf_counter() - started) / images


if __name__ == "__main__":
    main()
