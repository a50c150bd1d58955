"""The issue-16 probes: each attacks a running service, bounded in time, and reports numbers."""

import contextlib
import itertools
import os
import re
import socket
import threading
import time
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from bench.loadgen import multipart_request
from bench.photos import load_photos
from bench.service import LOOPBACK, Service, Watch, exchange, get, percentile, read_until_closed

MiB = 1024 * 1024
Report = dict[str, str]


def huge_header(service: Service) -> Report:
    """One 100 MB header on /healthz while a canary polls."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
    base = service.rss_mb()
    with Watch(service=service) as watch:
        status, seconds = _send_stream(service.port, head, 100 * MiB, b"\r\n\r\n")
    return {
        "answer": f"{status} after {seconds:.1f} s",
        "canary": watch.canary(),
        "peak RSS": f"+{watch.peak_rss_mb - base:.0f} MB",
    }


def raw_bodies(service: Service) -> Report:
    """Four 600 MB raw image/* bodies at once."""
    head = (
        "POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {600 * MiB}\r\n\r\n"
    ).encode()
    results: list[tuple[int | None, float]] = []
    base = service.rss_mb()
    with Watch(service=service) as watch:
        _together(4, lambda: results.append(_send_stream(service.port, head, 600 * MiB, b"")))
    return {
        "answers": ", ".join(f"{status} after {seconds:.1f} s" for status, seconds in results),
        "canary": watch.canary(),
        "peak RSS": f"+{watch.peak_rss_mb - base:.0f} MB",
    }


def large_uploads(service: Service, rounds: int = 20) -> Report:
    """`rounds` requests of 32 x 19 MiB multipart (random bytes), one after another."""
    exchange(service.port, multipart_request("x", 0, "/classify", load_photos()[:1]))
    time.sleep(1)
    baseline = service.rss_mb()
    payload = os.urandom(19 * MiB)
    request = multipart_request("x", 0, "/classify", [(f"{n}.jpg", payload) for n in range(32)])
    after: list[float] = []
    statuses: set[int | None] = set()
    with Watch(service=service, interval_s=0.05) as watch:
        for _ in range(rounds):
            statuses.add(exchange(service.port, request, timeout_s=120)[0])
            time.sleep(0.5)
            after.append(service.rss_mb())
    time.sleep(2)
    final = service.rss_mb()
    return {
        "answers": ", ".join(sorted(str(status) for status in statuses)),
        "baseline RSS": f"{baseline:.0f} MB",
        "peak RSS": f"{watch.peak_rss_mb:.0f} MB",
        "RSS after round 1 / 10 / last": " / ".join(f"{after[i]:.0f}" for i in (0, 9, -1)),
        "final RSS": f"{final:.0f} MB ({100 * (final - baseline) / baseline:+.1f}% of baseline)",
    }


def idle_connections(service: Service, hold_s: float = 35) -> Report:
    """500 idle sockets and 200 uploads at 1 byte/s, held for `hold_s`."""
    idle = [_connect(service.port) for _ in range(500)]
    slow = [_connect(service.port) for _ in range(200)]
    slow_head = (
        b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    for sock in slow:
        _try_send(sock, slow_head)
    with Watch(service=service, interval_s=0.5) as watch:
        deadline = time.monotonic() + hold_s
        while time.monotonic() < deadline:
            for sock in slow:
                _try_send(sock, b"x")
            time.sleep(1)
        files = service.open_files()
    held = {
        name: sum(_still_open(s) for s in group) for name, group in (("idle", idle), ("slow", slow))
    }
    for sock in idle + slow:
        sock.close()
    return {
        f"open after {hold_s:.0f} s": f"{held['idle']} of 500 idle, {held['slow']} of 200 slow",
        "service file descriptors": str(files),
        "canary": watch.canary(),
    }


def overload(service: Service, seconds: float = 20, clients: int = 64) -> Report:
    """`clients` connections posting 8 photos per request in a loop (run at QUEUE_LIMIT=16)."""
    photos = list(itertools.islice(itertools.cycle(load_photos()), 8))
    request = multipart_request("x", 0, "/classify", photos)
    outcomes: list[tuple[int | None, float]] = []
    stop_at = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < stop_at:
            status, took, _ = exchange(service.port, request, timeout_s=60)
            outcomes.append((status, took))

    _together(clients, client)
    report = {}
    for status in sorted({status for status, _ in outcomes}, key=str):
        took = [t * 1000 for s, t in outcomes if s == status]
        p50, p99 = percentile(took, 0.5), percentile(took, 0.99)
        report[f"{status}"] = f"{len(took)} answers, p50 {p50:.0f} / p99 {p99:.0f} ms"
    # The client's time includes waiting to be accepted and its own 64 threads' GIL; the
    # service's access line times a request from its first byte read to its answer.
    inside = _access_latencies_ms(service, "/classify", 503)
    if inside:
        report["503 inside the service"] = (
            f"p50 {percentile(inside, 0.5):.1f} / p99 {percentile(inside, 0.99):.1f} ms"
        )
    answered = len(outcomes) / seconds
    mean_ms = clients / answered * 1000
    report["answers per second"] = (
        f"{answered:.0f} (Little's law: {clients} clients / that = {mean_ms:.0f} ms a request)"
    )
    return report


def _access_latencies_ms(service: Service, route: str, status: int) -> list[float]:
    """Latencies the service logged for `route` answered `status` (its access lines)."""
    text = service.log.read_text(errors="replace")
    found = re.findall(rf"POST {re.escape(route)} {status} ([\d.]+) ms", text)
    return [float(value) for value in found]


def disconnects(service: Service, count: int = 20) -> Report:
    """`count` clients that close mid-upload; what /metrics and the log make of them."""
    for _ in range(count):
        sock = _connect(service.port)
        sock.sendall(
            b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 1048576\r\n\r\nxx"
        )
        time.sleep(0.1)
        sock.close()
    time.sleep(1)
    page = _read(service.port, get("/metrics")).partition(b"\r\n\r\n")[2].decode()
    counted = [
        (sample.labels["status"], sample.value)
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == "visionserve_http_requests_total"
        and sample.labels.get("route") == "/classify"
    ]
    log = service.log.read_text(errors="replace")
    return {
        "counted as": ", ".join(f"{status}: {float(n):.0f}" for status, n in counted) or "nothing",
        "tracebacks in the log": str(log.count("Traceback")),
        "log lines": str(len(log.splitlines())),
    }


def _send_stream(port: int, head: bytes, size: int, tail: bytes) -> tuple[int | None, float]:
    """Send head + `size` filler bytes + tail until the server stops us; its status and time."""
    started = time.perf_counter()
    chunk = b"A" * MiB
    with socket.create_connection((LOOPBACK, port), timeout=60) as sock:
        try:
            sock.sendall(head)
            for _ in range(size // MiB):
                sock.sendall(chunk)
            sock.sendall(tail)
        except OSError:
            pass  # refused early: read the answer
        try:
            answer = read_until_closed(sock)
        except OSError:
            answer = b""
    parts = answer.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return status, time.perf_counter() - started


def _together(count: int, work: Callable[[], None]) -> None:
    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)


def _connect(port: int) -> socket.socket:
    return socket.create_connection((LOOPBACK, port), timeout=10)


def _try_send(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)  # with a timeout set, recv would first wait for data
    try:
        sock.recv(1 << 16, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True  # nothing sent to us and not closed: the server still holds it
    except OSError:
        return False
    return False  # answered (a refusal) or closed


def _read(port: int, request: bytes) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=30) as sock:
        sock.sendall(request)
        return read_until_closed(sock)
