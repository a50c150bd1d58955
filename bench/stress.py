"""`make stress`: hostile-traffic probes (issue 16) against the service, on loopback.

Each probe starts its own service process from the code in --root (default: this checkout),
runs bounded in time, and prints what it measured. Point --root at a worktree of an older
commit to measure "before" with the same probes.
"""

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import attacks, shutdown
from bench.overload_wrk import overload_floor, overload_wrk
from bench.service import Service, running_service

ROOT = Path(__file__).resolve().parent.parent
Probe = Callable[[Service], dict[str, str]]

# name -> (extra VISION_* settings, probe)
PROBES: dict[str, tuple[dict[str, str], Probe]] = {
    "header": ({}, attacks.huge_header),
    "raw": ({}, attacks.raw_bodies),
    "memory": ({}, attacks.large_uploads),
    "idle": ({}, attacks.idle_connections),
    "overload": ({"VISION_QUEUE_LIMIT": "16"}, attacks.overload),
    "overload-wrk": ({"VISION_QUEUE_LIMIT": "16"}, overload_wrk),
    "disconnect": ({}, attacks.disconnects),
    "sigterm": ({}, lambda service: shutdown.sigterm(service, arrivals=False)),
    "sigterm-arrivals": ({}, lambda service: shutdown.sigterm(service, arrivals=True)),
}

# Probes of the machine rather than the service: they start their own server, not ours.
FLOORS: dict[str, Callable[[], dict[str, str]]] = {"overload-floor": overload_floor}

logger = logging.getLogger("bench.stress")


def main() -> None:
    """Run the chosen probes, one fresh service each, and print their numbers."""
    args = _parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    base_env = {
        "VISION_MODEL_DIR": str(args.model_dir),
        "VISION_LOG_LEVEL": "INFO",
        "VISION_AUTOTUNE_BATCH_SIZE": "false",
    } | dict(item.split("=", 1) for item in args.env)
    logs = Path(tempfile.mkdtemp(prefix="stress-"))
    for name in args.probes:
        if name in FLOORS:
            _print(name, None, *_timed(FLOORS[name]))
            continue
        env, probe = PROBES[name]
        for run in range(args.repeat if name.startswith("sigterm") else 1):
            started = time.monotonic()
            with running_service(args.root, base_env | env, logs / f"{name}-{run}.log") as service:
                report = probe(service)
            _print(name, args.root, report, time.monotonic() - started)
    print(f"service logs: {logs}")


def _timed(probe: Callable[[], dict[str, str]]) -> tuple[dict[str, str], float]:
    started = time.monotonic()
    return probe(), time.monotonic() - started


def _print(name: str, root: Path | None, report: dict[str, str], took: float) -> None:
    served = f", root {root}" if root is not None else ", not our service"
    print(f"[{name}] ({took:.0f} s{served})", flush=True)
    for key, value in report.items():
        print(f"    {key}: {value}", flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose app/ is served")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument(
        "--probes", nargs="+", choices=sorted(PROBES | FLOORS), default=list(PROBES | FLOORS)
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each SIGTERM probe")
    parser.add_argument("--env", nargs="*", default=[], help="VISION_*=value for every service")
    return parser


if __name__ == "__main__":
    main()
