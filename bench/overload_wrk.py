"""The overload probe with wrk as the client: per-status latency measured by a C load generator.

The Python probe's 64 threads share the 2 cores with the service and push every 0.8 MB body
through the GIL, so its client-side latencies time the client as much as the service. wrk
(one connection per wrk thread, keep-alive, the body prebuilt) times each answer in
bench/overload.lua with the monotonic clock, grouped by status.
"""

import itertools
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.loadgen import multipart_request
from bench.photos import load_photos
from bench.service import Service, percentile

Report = dict[str, str]
_SCRIPT = Path(__file__).with_name("overload.lua")


def overload_wrk(service: Service, seconds: float = 20, clients: int = 64) -> Report:
    """`clients` keep-alive connections posting 8 photos a request (run at QUEUE_LIMIT=16)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk; `make stress` does)")
    photos = list(itertools.islice(itertools.cycle(load_photos()), 8))
    head, _, body = multipart_request("x", 0, "/classify", photos).partition(b"\r\n\r\n")
    content_type = next(
        line.split(b": ", 1)[1] for line in head.split(b"\r\n") if line.startswith(b"Content-Type")
    )
    with tempfile.TemporaryDirectory(prefix="overload-wrk-") as directory:
        body_file, latency_file = Path(directory) / "body", Path(directory) / "latencies"
        body_file.write_bytes(body)
        command = [
            wrk,
            f"-t{clients}",
            f"-c{clients}",
            f"-d{seconds:.0f}s",
            "--timeout=60s",
            "-s",
            str(_SCRIPT),
            f"http://127.0.0.1:{service.port}/classify",
            "--",
            str(body_file),
            content_type.decode(),
        ]
        summary = subprocess.run(
            command,
            env={"WRK_LATENCY_FILE": str(latency_file)},
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=True,
        ).stdout
        by_status = _latencies(latency_file.read_text())
    return _report(by_status, summary, seconds)


def _latencies(text: str) -> dict[str, list[float]]:
    by_status: dict[str, list[float]] = {}
    for line in text.splitlines():
        status, *values = line.split()
        by_status.setdefault(status, []).extend(float(value) for value in values)
    return by_status


def _report(by_status: dict[str, list[float]], summary: str, seconds: float) -> Report:
    report = {}
    for status, took in sorted(by_status.items()):
        p50, p99 = percentile(took, 0.5), percentile(took, 0.99)
        report[status] = f"{len(took)} answers, p50 {p50:.1f} / p99 {p99:.1f} ms (wrk)"
    answered = sum(len(took) for took in by_status.values())
    report["answers per second"] = f"{answered / seconds:.0f}"
    errors = [line.strip() for line in summary.splitlines() if "errors" in line.lower()]
    if errors:
        report["wrk socket errors"] = "; ".join(errors)
    return report
