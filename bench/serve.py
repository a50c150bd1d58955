"""Benchmark POST /classify, /detect or /segment against the in-process ceiling, on one machine.

    python -m bench.serve [--model NAME] [--duration 10] [--load-rounds 3] [--concurrency 1 32]
                          [--env VISION_X=Y]

The route follows the model's task.
First the ceiling: the same photos decoded, preprocessed and classified in-process with no HTTP,
in every layout (processes x threads x batch size), each measured `--rounds` times, interleaved;
the best layout's median is the ceiling. Then the service under a keep-alive load at each
concurrency, in `--load-rounds` interleaved windows; the median window is reported. Prints
images/s and p50/p99 latency next to the ceiling with the ratio, and writes the numbers as JSON
to bench/results/.
"""

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from bench.ceiling import Layout, measure_ceiling
from bench.loadgen import LoadResult, multipart_request, run_load
from bench.photos import load_photos

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Measure the ceiling, then the service under load, and print both."""
    args = _parser().parse_args()
    photos = load_photos()
    ceiling = _ceiling(args, [data for _, data in photos])
    best_layout, best = max(ceiling.items(), key=lambda item: item[1])
    port = _free_port()
    server = _start_server(port, args)
    try:
        print(f"server: {_served_batch_size(port, args.model)}")
        runs = _load_rounds(port, args, photos)
    finally:
        server.terminate()
        server.wait(60)
    rows = _report(args, best, best_layout, runs)
    _save(args, ceiling, rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="imagenet-mobilenet-v2")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load window")
    parser.add_argument(
        "--load-rounds", type=int, default=3, help="load windows per concurrency (median)"
    )
    parser.add_argument("--ceiling-s", type=float, default=3.0, help="seconds per layout")
    parser.add_argument("--rounds", type=int, default=3, help="ceiling repetitions (median)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--images-per-request", type=int, default=1)
    parser.add_argument("--env", nargs="*", default=[], help="VISION_*=value for the server")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    return parser


def _layouts(batch_sizes: list[int]) -> list[Layout]:
    cores = os.cpu_count() or 1
    shapes = {(1, cores), (cores, 1)}
    return [Layout(p, t, b) for p, t in sorted(shapes) for b in batch_sizes]


def _ceiling(args: argparse.Namespace, photos: list[bytes]) -> dict[str, float]:
    samples: dict[str, list[float]] = defaultdict(list)
    layouts = _layouts(args.batch_sizes)
    for _ in range(args.rounds):
        for point in measure_ceiling(args.model_dir / args.model, photos, layouts, args.ceiling_s):
            samples[str(point.layout)].append(point.images_per_s)
    medians = {layout: statistics.median(values) for layout, values in samples.items()}
    print(f"in-process ceiling, {args.model}, median of {args.rounds} x {args.ceiling_s:.0f} s:")
    for layout, values in samples.items():
        spread = ", ".join(f"{value:.1f}" for value in values)
        print(f"  {layout:<28} {medians[layout]:7.1f} images/s  ({spread})")
    return medians


def _task(args: argparse.Namespace) -> str:
    card = json.loads((args.model_dir / args.model / "card.json").read_text())
    return str(card["task"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start_server(port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    env = os.environ | {"VISION_PORT": str(port), "VISION_MODEL_DIR": str(args.model_dir)}
    env |= {"VISION_LOG_LEVEL": "WARNING"}
    # Every request names its model, so the store need not hold the default models that
    # readiness waits for (a store with only the benchmarked model would never be ready).
    for task in ("CLASSIFIER", "DETECTOR", "SEGMENTER"):
        env[f"VISION_DEFAULT_{task}"] = "none"
    env |= dict(item.split("=", 1) for item in args.env)
    server = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=ROOT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the server did not become ready in 180 s")


def _served_batch_size(port: int, model: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/models/{model}", timeout=5) as answer:
        description = json.load(answer)
    return f"{model} on {description['device']}, batch size {description['max_batch_size']}"


def _load_rounds(
    port: int, args: argparse.Namespace, photos: list[tuple[str, bytes]]
) -> dict[int, list[LoadResult]]:
    """`--load-rounds` windows per concurrency, interleaved, so a noisy moment hits one window."""
    runs: dict[int, list[LoadResult]] = defaultdict(list)
    for _ in range(args.load_rounds):
        for concurrency in args.concurrency:
            runs[concurrency].append(_load(port, args, photos, concurrency))
    return runs


def _load(
    port: int, args: argparse.Namespace, photos: list[tuple[str, bytes]], concurrency: int
) -> LoadResult:
    per_request = args.images_per_request
    path = f"/{_task(args)}?model={args.model}"
    payloads = []
    for first in range(len(photos)):
        files = [photos[(first + j) % len(photos)] for j in range(per_request)]
        payloads.append((multipart_request("127.0.0.1", port, path, files), per_request))
    asyncio.run(run_load("127.0.0.1", port, payloads, concurrency, 3.0))  # warm-up
    return asyncio.run(run_load("127.0.0.1", port, payloads, concurrency, args.duration))


def _report(
    args: argparse.Namespace, ceiling: float, layout: str, runs: dict[int, list[LoadResult]]
) -> list[dict[str, object]]:
    print(
        f"\nPOST /{_task(args)}, {args.images_per_request} image(s)/request, server env {args.env}"
    )
    header = ("concurrency", "images/s", "p50 ms", "p99 ms", "vs ceiling", "errors")
    print("{:>11} {:>9} {:>8} {:>8} {:>10} {:>6}".format(*header))
    rows: list[dict[str, object]] = []
    for concurrency, results in runs.items():
        rates = [_rate(result) for result in results]
        result = sorted(results, key=_rate)[len(results) // 2]  # the median window
        rate = _rate(result)
        p50, p99 = _percentiles(result.latencies)
        ratio = rate / ceiling
        failures = sum(window.failures for window in results)
        windows = ", ".join(f"{window:.1f}" for window in rates)
        print(
            f"{concurrency:>11} {rate:9.1f} {p50:8.1f} {p99:8.1f} {ratio:9.2f}x {failures:>6}"
            f"  ({windows})"
        )
        rows.append(
            {
                "concurrency": concurrency,
                "images_per_s": rate,
                "window_images_per_s": rates,
                "p50_ms": p50,
                "p99_ms": p99,
                "ratio_to_ceiling": ratio,
                "failures": failures,
                "statuses": result.statuses,
            }
        )
    print(f"ceiling: {ceiling:.1f} images/s in-process ({layout})")
    return rows


def _save(
    args: argparse.Namespace, ceiling: dict[str, float], rows: list[dict[str, object]]
) -> None:
    args.output.mkdir(parents=True, exist_ok=True)
    record = {
        "model": args.model,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "ceiling_images_per_s": ceiling,
        "http": rows,
        "server_env": args.env,
    }
    path = args.output / f"{args.model}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=2))


def _rate(result: LoadResult) -> float:
    return result.images / result.elapsed_s


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) < 2:
        return (latencies[0] * 1000, latencies[0] * 1000) if latencies else (0.0, 0.0)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


if __name__ == "__main__":
    main()
