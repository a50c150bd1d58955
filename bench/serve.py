"""Benchmark POST /classify, /detect or /segment against the in-process ceiling, on one machine.

    python -m bench.serve [--model NAME] [--duration 10] [--rounds 3] [--concurrency 1 32]
                          [--env VISION_X=Y]

The route follows the model's task. The service is started once; then each round measures the
in-process ceiling (the same photos decoded, preprocessed and run through the model with no
HTTP, in every layout: processes x threads x batch size) and, right after it, the service under
a keep-alive load at each concurrency. Each load window is divided by its own round's ceiling
(the best layout of that round), so a slow moment of a shared machine moves both sides of a
ratio alike; the report gives each figure's median over the rounds and its range. Prints
images/s and p50/p99 latency next to the ceiling with the ratio, and writes the numbers as JSON
to bench/results/.

The same comparison in CPU time: the server's processes' CPU per image served (from /proc,
the load client excluded) against the ceiling's CPU per image in its best layout. It says what
serving adds to each image's work, apart from cores left idle (which only the images/s ratio
counts). It moves between rounds too: on a shared machine the CPU time an image takes changes
with what the neighbours do.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ceiling import Layout, measure_ceiling
from bench.loadgen import LoadResult, multipart_request, run_load
from bench.photos import load_photos

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, kw_only=True, slots=True)
class Round:
    """One round: the ceiling of every layout (images/s), then a load window per concurrency."""

    ceiling: dict[str, float]
    ceiling_cpu_ms: float  # CPU per image of the fastest layout
    windows: dict[int, LoadResult]
    server_cpu_ms: dict[int, float]  # CPU per image served, per concurrency

    @property
    def best_ceiling(self) -> float:
        return max(self.ceiling.values())

    def cpu_ratio(self, concurrency: int) -> float:
        """The ceiling's CPU per image over the server's: 1.0 when serving adds nothing."""
        return self.ceiling_cpu_ms / self.server_cpu_ms[concurrency]


def main() -> None:
    """Start the service, then alternate the ceiling and the load, and print both."""
    args = _parser().parse_args()
    photos = load_photos()
    port = _free_port()
    server = _start_server(port, args)
    try:
        print(f"server: {_served_batch_size(port, args.model)}")
        rounds = [_round(port, server.pid, args, photos) for _ in range(args.rounds)]
    finally:
        server.terminate()
        server.wait(60)
    _print_ceiling(args, rounds)
    rows = _report(args, rounds)
    _save(args, rounds, rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="imagenet-mobilenet-v2")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load window")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of ceiling + load windows (median)"
    )
    parser.add_argument("--ceiling-s", type=float, default=3.0, help="seconds per layout")
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


def _round(
    port: int, server_pid: int, args: argparse.Namespace, photos: list[tuple[str, bytes]]
) -> Round:
    points = measure_ceiling(
        args.model_dir / args.model,
        [data for _, data in photos],
        _layouts(args.batch_sizes),
        args.ceiling_s,
    )
    windows, server_cpu_ms = {}, {}
    for concurrency in args.concurrency:
        windows[concurrency], server_cpu_ms[concurrency] = _load(
            port, server_pid, args, photos, concurrency
        )
    return Round(
        ceiling={str(point.layout): point.images_per_s for point in points},
        ceiling_cpu_ms=max(points, key=lambda point: point.images_per_s).cpu_ms_per_image,
        windows=windows,
        server_cpu_ms=server_cpu_ms,
    )


def _print_ceiling(args: argparse.Namespace, rounds: list[Round]) -> None:
    print(f"in-process ceiling, {args.model}, {len(rounds)} rounds x {args.ceiling_s:.0f} s:")
    for layout in rounds[0].ceiling:
        values = [round_.ceiling[layout] for round_ in rounds]
        spread = ", ".join(f"{value:.1f}" for value in values)
        print(f"  {layout:<28} {statistics.median(values):7.1f} images/s  ({spread})")


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


def _load(
    port: int,
    server_pid: int,
    args: argparse.Namespace,
    photos: list[tuple[str, bytes]],
    concurrency: int,
) -> tuple[LoadResult, float]:
    """The load window's result and the server's CPU milliseconds per image in it."""
    per_request = args.images_per_request
    path = f"/{_task(args)}?model={args.model}"
    payloads = []
    for first in range(len(photos)):
        files = [photos[(first + j) % len(photos)] for j in range(per_request)]
        payloads.append((multipart_request("127.0.0.1", port, path, files), per_request))
    asyncio.run(run_load("127.0.0.1", port, payloads, concurrency, 3.0))  # warm-up
    cpu_before = process_tree_cpu_s(server_pid)
    result = asyncio.run(run_load("127.0.0.1", port, payloads, concurrency, args.duration))
    cpu_s = process_tree_cpu_s(server_pid) - cpu_before
    return result, 1000 * cpu_s / max(result.images, 1)


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants (Linux)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name (which may hold spaces): utime and stime are 12th and 13th.
    fields = stat.rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        total += sum(process_tree_cpu_s(int(child)) for child in children)
    return total


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _report(args: argparse.Namespace, rounds: list[Round]) -> list[dict[str, object]]:
    print(
        f"\nPOST /{_task(args)}, {args.images_per_request} image(s)/request, server env {args.env}"
    )
    header = ("concurrency", "images/s", "p50 ms", "p99 ms", "vs ceiling")
    print("{:>11} {:>9} {:>8} {:>8} {:>10}  errors  (each round: images/s, ratio)".format(*header))
    rows = [_row(concurrency, rounds) for concurrency in args.concurrency]
    for row in rows:
        windows = ", ".join(
            f"{rate:.1f} {ratio:.2f}x"
            for rate, ratio in zip(row["window_images_per_s"], row["window_ratios"], strict=True)
        )
        print(
            f"{row['concurrency']:>11} {row['images_per_s']:9.1f} {row['p50_ms']:8.1f}"
            f" {row['p99_ms']:8.1f} {row['ratio_to_ceiling']:9.2f}x {row['failures']:>7}"
            f"  ({windows})"
        )
    ceilings = [round_.best_ceiling for round_ in rounds]
    spread = ", ".join(f"{value:.1f}" for value in ceilings)
    print(f"ceiling (best layout of each round): {statistics.median(ceilings):.1f} ({spread})")
    _print_cpu(rows, rounds)
    return rows


def _print_cpu(rows: list[dict[str, Any]], rounds: list[Round]) -> None:
    ceiling_cpu = [round_.ceiling_cpu_ms for round_ in rounds]
    print(
        f"CPU ms per image: ceiling {statistics.median(ceiling_cpu):.1f} "
        f"({', '.join(f'{value:.1f}' for value in ceiling_cpu)})"
    )
    for row in rows:
        windows = zip(row["window_server_cpu_ms"], row["window_cpu_ratios"], strict=True)
        pairs = ", ".join(f"{cpu:.1f} {ratio:.2f}x" for cpu, ratio in windows)
        print(
            f"{row['concurrency']:>11} served {row['server_cpu_ms']:.1f}, "
            f"ceiling / served {row['cpu_ratio_to_ceiling']:.2f}x  ({pairs})"
        )


def _row(concurrency: int, rounds: list[Round]) -> dict[str, Any]:
    windows = [round_.windows[concurrency] for round_ in rounds]
    rates = [_rate(window) for window in windows]
    ratios = [_rate(r.windows[concurrency]) / r.best_ceiling for r in rounds]
    cpu_ms = [r.server_cpu_ms[concurrency] for r in rounds]
    cpu_ratios = [r.cpu_ratio(concurrency) for r in rounds]
    median_window = sorted(windows, key=_rate)[len(windows) // 2]
    p50, p99 = _percentiles(median_window.latencies)
    return {
        "concurrency": concurrency,
        "images_per_s": statistics.median(rates),
        "window_images_per_s": rates,
        "p50_ms": p50,
        "p99_ms": p99,
        "ratio_to_ceiling": statistics.median(ratios),
        "window_ratios": ratios,
        "server_cpu_ms": statistics.median(cpu_ms),
        "window_server_cpu_ms": cpu_ms,
        "cpu_ratio_to_ceiling": statistics.median(cpu_ratios),
        "window_cpu_ratios": cpu_ratios,
        "failures": sum(window.failures for window in windows),
        "statuses": median_window.statuses,
    }


def _save(args: argparse.Namespace, rounds: list[Round], rows: list[dict[str, Any]]) -> None:
    args.output.mkdir(parents=True, exist_ok=True)
    record = {
        "model": args.model,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "ceiling_images_per_s": [round_.ceiling for round_ in rounds],
        "ceiling_cpu_ms_per_image": [round_.ceiling_cpu_ms for round_ in rounds],
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
