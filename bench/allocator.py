"""What the C allocator's settings cost the pipeline: milliseconds and page faults per image.

    python -m bench.allocator [--models objects-segmenter imagenet-mobilenet-v2] [--batch 4]

Each setting runs in a fresh process (glibc reads its options once), one thread, the service's
own decode, preprocessing, forward pass and answer (`bench.ceiling.pipeline`) on the benchmark
photos for `--seconds`, and prints the time and the minor page faults per image. The settings:
glibc's defaults, the service's (`app.memory.tune_allocator`: 4 arenas a core), and a fixed 1 MiB
mmap threshold (what the service did before: every activation tensor in a fresh mapping).
"""

import argparse
import ctypes
import ctypes.util
import resource
import subprocess
import sys
import time
from itertools import cycle
from pathlib import Path

import torch

from app.memory import tune_allocator
from app.runtime.device import available_cores
from app.runtime.loader import load_model
from app.runtime.optimize import optimize_for_cpu
from bench.ceiling import pipeline
from bench.photos import load_photos

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("glibc-default", "service", "mmap-1MiB")
_M_MMAP_THRESHOLD = -3
_M_TRIM_THRESHOLD = -1


def main() -> None:
    """Every setting for every model, each in its own process."""
    args = _parser().parse_args()
    if args.child:
        _child(args.child, args.models[0], args.batch, args.seconds)
        return
    print(f"one thread, batch {args.batch}, {args.seconds:.0f} s each")
    for model in args.models:
        for setting in SETTINGS:
            command = [sys.executable, "-m", "bench.allocator", "--child", setting]
            command += ["--models", model, "--batch", str(args.batch)]
            subprocess.run([*command, "--seconds", str(args.seconds)], check=True, cwd=ROOT)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--models", nargs="+", default=["objects-segmenter", "imagenet-mobilenet-v2"]
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    return parser


def _child(setting: str, model_name: str, batch_size: int, seconds: float) -> None:
    _apply(setting)
    torch.set_num_threads(1)
    model = optimize_for_cpu(load_model(ROOT / "models" / model_name, torch.device("cpu")))
    run = pipeline(model)
    photos = cycle(data for _, data in load_photos())
    for _ in range(3):  # warm-up: the allocator reaches its steady state
        run([next(photos) for _ in range(batch_size)])
    before, started, images = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        run([next(photos) for _ in range(batch_size)])
        images += batch_size
    elapsed, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    faults = (after.ru_minflt - before.ru_minflt) / images
    system_ms = 1000 * (after.ru_stime - before.ru_stime) / images
    print(
        f"  {model_name:<24} {setting:<14} {1000 * elapsed / images:6.1f} ms/image"
        f"  {faults:7.0f} page faults/image  {system_ms:5.1f} ms/image in the kernel"
    )


def _apply(setting: str) -> None:
    if setting == "service":
        tune_allocator(available_cores())
    elif setting == "mmap-1MiB":
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 20)
        tune_allocator(available_cores())


if __name__ == "__main__":
    main()
