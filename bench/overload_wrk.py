"""The overload probe with wrk as the client: per-status latency measured by a C load generator.

The Python probe's 64 threads share the 2 cores with the service and push every 0.8 MB body
through the GIL, so its client-side latencies time the client as much as the service. wrk
(one connection per wrk thread, keep-alive, the body prebuilt) times each answer in
bench/overload.lua with the monotonic clock, grouped by status.
"""

import contextlib
import itertools
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.loadgen import multipart_request
from bench.photos import load_photos
from bench.service import LOOPBACK, Service, free_port, percentile

Report = dict[str, str]
_SCRIPT = Path(__file__).with_name("overload.lua")
_ROOT = Path(__file__).resolve().parent.parent


def overload_wrk(service: Service, seconds: float = 20, clients: int = 64) -> Report:
    """`clients` keep-alive connections posting 8 photos a request (run at QUEUE_LIMIT=16)."""
    return _wrk_report(service.port, seconds, clients)


def overload_floor(seconds: float = 20, clients: int = 64) -> Report:
    """The same traffic against `bench.refuse_all` (every request 503 at once, nothing else
    running): the client-side 503 latency no service on this stack and machine can beat."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.refuse_all:app", "--port", str(port)]
    command += ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    server = subprocess.Popen([*command, "--log-level", "warning"], cwd=_ROOT)
    try:
        _wait_listening(port)
        return _wrk_report(port, seconds, clients)
    finally:
        server.kill()
        server.wait(30)


def _wait_listening(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listened on port {port} within {timeout_s} s")


def _wrk_report(port: int, seconds: float, clients: int) -> Report:
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
            f"http://{LOOPBACK}:{port}/classify",
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
