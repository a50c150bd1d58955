"""Benchmark POST /classify against the in-process ceiling, in one run on one machine.

    python -m bench.classify [--duration 15] [--concurrency 1 32]

Prints images/s and p50/p99 latency per concurrency next to the best in-process throughput, and
the ratio. Writes the numbers as JSON to bench/results/.
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
from dataclasses import asdict
from pathlib import Path

from bench.ceiling import CeilingPoint, measure_ceiling
from bench.loadgen import LoadResult, multipart_request, run_load
from bench.photos import load_photos

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Measure the ceiling, then the service under load, and print both."""
    args = _parser().parse_args()
    photos = load_photos()
    ceiling = measure_ceiling(
        args.model_dir / args.model, [data for _, data in photos], args.batch_sizes, args.ceiling_s
    )
    best = max(ceiling, key=lambda point: point.images_per_s)
    print(f"in-process ceiling ({args.model}, {torch_threads()} threads):")
    for point in ceiling:
        print(f"  batch {point.batch_size:>3}: {point.images_per_s:7.1f} images/s")
    port = _free_port()
    server = _start_server(port, args)
    try:
        runs = {c: _load(port, args, photos, c) for c in args.concurrency}
    finally:
        server.terminate()
        server.wait(30)
    _report(args, best.images_per_s, best.batch_size, runs, ceiling)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="imagenet-mobilenet-v2")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per concurrency")
    parser.add_argument("--ceiling-s", type=float, default=6.0, help="seconds per batch size")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--images-per-request", type=int, default=1)
    parser.add_argument("--env", nargs="*", default=[], help="extra VISION_*=value for the server")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results")
    return parser


def torch_threads() -> int:
    """Intra-op threads torch uses here."""
    import torch  # noqa: PLC0415

    return torch.get_num_threads()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start_server(port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    env = os.environ | {"VISION_PORT": str(port), "VISION_MODEL_DIR": str(args.model_dir)}
    env |= {"VISION_LOG_LEVEL": "WARNING"}
    env |= dict(item.split("=", 1) for item in args.env)
    server = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the server did not become ready in 120 s")


def _load(
    port: int, args: argparse.Namespace, photos: list[tuple[str, bytes]], concurrency: int
) -> LoadResult:
    per_request = args.images_per_request
    path = f"/classify?model={args.model}"
    payloads = [
        (
            multipart_request(
                "127.0.0.1", port, path, [photos[(i + j) % len(photos)] for j in range(per_request)]
            ),
            per_request,
        )
        for i in range(len(photos))
    ]
    asyncio.run(run_load("127.0.0.1", port, payloads, concurrency, 2.0))  # warm-up
    return asyncio.run(run_load("127.0.0.1", port, payloads, concurrency, args.duration))


def _report(
    args: argparse.Namespace,
    ceiling_ips: float,
    ceiling_batch: int,
    runs: dict[int, LoadResult],
    ceiling: list[CeilingPoint],
) -> None:
    print(
        f"\nPOST /classify, {args.images_per_request} image(s)/request, {args.duration:.0f} s each:"
    )
    header = ("concurrency", "images/s", "p50 ms", "p99 ms", "vs ceiling", "errors")
    print("{:>11} {:>9} {:>8} {:>8} {:>10} {:>6}".format(*header))
    rows = []
    for concurrency, result in runs.items():
        ips = result.images / result.elapsed_s
        p50, p99 = _percentiles(result.latencies)
        ratio = ips / ceiling_ips
        print(
            f"{concurrency:>11} {ips:9.1f} {p50:8.1f} {p99:8.1f} {ratio:9.2f}x {result.failures:>6}"
        )
        rows.append(
            {
                "concurrency": concurrency,
                "images_per_s": ips,
                "p50_ms": p50,
                "p99_ms": p99,
                "ratio_to_ceiling": ratio,
                "failures": result.failures,
                "statuses": result.statuses,
            }
        )
    print(f"ceiling: {ceiling_ips:.1f} images/s in-process at batch {ceiling_batch}")
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    record = {
        "model": args.model,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "ceiling": [asdict(point) for point in ceiling],
        "http": rows,
        "server_env": args.env,
    }
    (args.output / f"classify-{stamp}.json").write_text(json.dumps(record, indent=2))


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) < 2:
        return (latencies[0] * 1000, latencies[0] * 1000) if latencies else (0.0, 0.0)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


if __name__ == "__main__":
    main()
