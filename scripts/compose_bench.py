"""Throughput through the load balancer with 1, 2, ... replicas: `make compose-bench`.

    python -m scripts.compose_bench [--replicas 1 2] [--duration 30] [--concurrency 8]

Brings up the `scale` profile (nginx in front of N `replica` containers), grows it one step at a
time with `--scale` (nginx picks the new replicas up by itself), and loads it with one photo per
request from the same machine. Client, nginx and replicas share this machine's cores.
"""

import argparse
import asyncio
import collections
import json
import logging
import re
import statistics
import time
from typing import Any

from bench.loadgen import LoadResult, multipart_request, run_load
from bench.photos import load_photos
from scripts.stack import Stack

logger = logging.getLogger("compose-bench")
UPSTREAM = re.compile(r"upstream=(\S+)")


def main() -> None:
    """Measure images/s through nginx at each replica count, then bring the stack down."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = _parser().parse_args()
    env = {
        "VISION_API_KEYS": "",
        # Compose 1.29 does not start a named service's profiled dependencies (postgres).
        "COMPOSE_PROFILES": "scale",
        "VISION_INFERENCE_THREADS": str(args.inference_threads),
        "VISION_TORCH_THREADS": str(args.torch_threads),
    }
    stack = Stack(args.project, args.port, env=env)
    payloads = [
        (multipart_request("127.0.0.1", args.port, "/classify", [photo]), 1)
        for photo in load_photos()
    ]
    report: dict[str, Any] = {"settings": env, "concurrency": args.concurrency}
    try:
        started = time.perf_counter()
        stack.compose("build", "replica", "lb")
        report["build_s"] = round(time.perf_counter() - started, 1)
        for replicas in args.replicas:
            started = time.perf_counter()
            stack.compose("up", "-d", "--scale", f"replica={replicas}", "lb")
            stack.wait_healthy("replica", replicas)
            stack.wait_healthy("lb")
            up_s = time.perf_counter() - started
            time.sleep(2 * 5)  # let nginx notice a new replica (its entrypoint polls every 5 s)
            asyncio.run(run_load("127.0.0.1", args.port, payloads, args.concurrency, 5))  # warm-up
            log_lines = len(stack.compose("logs", "--no-color", "lb", capture=True).splitlines())
            result = asyncio.run(
                run_load("127.0.0.1", args.port, payloads, args.concurrency, args.duration)
            )
            logs = stack.compose("logs", "--no-color", "lb", capture=True).splitlines()[log_lines:]
            report[f"replicas_{replicas}"] = _summary(result, logs, up_s)
            logger.info("%d replica(s): %s", replicas, json.dumps(report[f"replicas_{replicas}"]))
    finally:
        stack.down()
    logger.info("compose-bench: %s", json.dumps(report))


def _summary(result: LoadResult, lb_log: list[str], up_s: float) -> dict[str, Any]:
    latencies = sorted(result.latencies) or [float("nan")]
    spread = collections.Counter(m.group(1) for line in lb_log if (m := UPSTREAM.search(line)))
    return {
        "images_per_s": round(result.images / result.elapsed_s, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1),
        "statuses": result.statuses,
        "requests_per_replica": dict(spread),
        "up_to_healthy_s": round(up_s, 1),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="connections kept busy")
    parser.add_argument("--inference-threads", type=int, default=1, help="per replica; 0 = auto")
    parser.add_argument("--torch-threads", type=int, default=1, help="per replica; 0 = auto")
    parser.add_argument("--project", default="visionserve-bench", help="compose project name")
    parser.add_argument("--port", type=int, default=18001, help="published on 127.0.0.1:PORT")
    return parser


if __name__ == "__main__":
    main()
