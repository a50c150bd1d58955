"""Why lone batches share one thread: a 2-thread forward, one OpenMP team against two.

    python -m bench.lone_threads [--model-dir bench/peer-models/fp32/resnet18-peer] [--calls 40]

Loads the model as the service does (oneDNN when it is faster), then times batch-1 forward
passes with every core's intra-op threads: first from one dedicated thread (one OpenMP team,
as the service runs lone batches), then from two threads taking turns (two teams, as each
worker running its own lone batches did), then from one thread again, and one thread with a
single intra-op thread for scale. Each case runs in a fresh process, since libgomp's teams
live as long as their threads.
"""

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from app.runtime.device import available_cores
from app.runtime.loader import load_model
from app.runtime.optimize import optimize_for_cpu

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "one thread, every core": (1, 0),
    "two threads taking turns, every core": (2, 0),
    "one thread, one core": (1, 1),
}


def main() -> None:
    """Each case in its own process; prints the median ms per forward."""
    args = _parser().parse_args()
    context = multiprocessing.get_context("spawn")
    print(f"{args.model_dir.name}, batch 1, {available_cores()} cores, {args.calls} calls each")
    with context.Pool(1, maxtasksperchild=1) as pool:
        for name, (callers, threads) in CASES.items():
            ms = pool.apply(
                _case, (args.model_dir, callers, threads or available_cores(), args.calls)
            )
            print(f"  {name:>38}: median {ms:.1f} ms")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--model-dir", type=Path, default=ROOT / "bench/peer-models/fp32/resnet18-peer"
    )
    parser.add_argument("--calls", type=int, default=40)
    return parser


def _case(model_dir: Path, callers: int, threads: int, calls: int) -> float:
    torch.set_num_threads(1)
    model = optimize_for_cpu(load_model(model_dir, torch.device("cpu")))
    spec = model.card.input
    image = torch.randn(1, spec.channels, *spec.tensor_size)

    def forward() -> float:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            started = time.perf_counter()
            model.module(image)
            return time.perf_counter() - started

    executors = [ThreadPoolExecutor(1) for _ in range(callers)]
    for executor in executors:  # each caller's team exists before the timing starts
        for _ in range(3):
            executor.submit(forward).result()
    took = [executors[call % callers].submit(forward).result() for call in range(calls)]
    return statistics.median(took) * 1000


if __name__ == "__main__":
    main()
