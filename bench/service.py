"""A service process on loopback for stress probes, and what is measured around it."""

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


@dataclass(kw_only=True)
class Service:
    """A running `python -m app` and where it listens."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def rss_mb(self) -> float:
        """Resident memory now, in MB (0 once it has exited)."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0.0
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def open_files(self) -> int:
        """File descriptors open in the service (sockets included)."""
        try:
            return sum(1 for _ in Path(f"/proc/{self.process.pid}/fd").iterdir())
        except OSError:
            return 0


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_service(root: Path, env: dict[str, str], log: Path) -> Iterator[Service]:
    """Start the service from the code in `root`; stop it (if still running) afterwards."""
    port = free_port()
    environment = os.environ | {"VISION_PORT": str(port)} | env
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=root, env=environment, stdout=sink, stderr=sink
        )
    service = Service(process=process, port=port, log=log)
    try:
        _wait_ready(service)
        yield service
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(30)


def _wait_ready(service: Service, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"the service exited during start-up; see {service.log}")
        status, _, _ = exchange(service.port, get("/readyz"), timeout_s=5)
        if status == 200:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the service was not ready within {timeout_s} s")


def get(path: str) -> bytes:
    """A GET request that closes its connection."""
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


def exchange(port: int, request: bytes, timeout_s: float = 30) -> tuple[int | None, float, str]:
    """(status or None, seconds, socket error or '') for `request` on a new connection."""
    started = time.perf_counter()
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout_s) as sock:
            with contextlib.suppress(OSError):  # an early answer stops the upload: read it
                sock.sendall(request)
            answer = read_until_closed(sock)
    except OSError as error:
        return None, time.perf_counter() - started, type(error).__name__
    return status_of(answer), time.perf_counter() - started, ""


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes."""
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int | None:
    """The status code of a raw HTTP answer, or None for no answer."""
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


@dataclass(kw_only=True)
class Watch:
    """Peak RSS, and a canary client polling /healthz, while an attack runs."""

    service: Service
    interval_s: float = 0.1
    min_s: float = 3.0  # watch at least this long, so a quick refusal still gets a canary
    peak_rss_mb: float = 0.0
    canary_ms: list[float] = field(default_factory=list)
    canary_failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "Watch":
        self._started = time.monotonic()
        self.peak_rss_mb = self.service.rss_mb()
        self._threads = [threading.Thread(target=self._sample), threading.Thread(target=self._poll)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(max(0.0, self._started + self.min_s - time.monotonic()))
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_rss_mb = max(self.peak_rss_mb, self.service.rss_mb())

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            status, seconds, _ = exchange(self.service.port, get("/healthz"), timeout_s=30)
            if status == 200:
                self.canary_ms.append(seconds * 1000)
            else:
                self.canary_failures += 1

    def canary(self) -> str:
        """'p50 / max ms (failures)' of the canary."""
        if not self.canary_ms:
            return f"no answer ({self.canary_failures} failed)"
        p50 = statistics.median(self.canary_ms)
        return f"p50 {p50:.1f} / max {max(self.canary_ms):.0f} ms, {self.canary_failures} failed"


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile of `values` (nearest rank), 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
