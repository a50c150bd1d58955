"""SIGTERM: readiness off first, listener open for the drain, every accepted request answered."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.images import RED, solid
from tests.server.conftest import read_all

IMAGE = solid(RED)
READY = b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def raw_request(path: str, images: int = 1) -> bytes:
    """A complete HTTP request: one raw image, or a multipart body with `images` files."""
    if images == 1:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        return f"{head}Content-Length: {len(IMAGE)}\r\n\r\n".encode() + IMAGE
    part = (
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="r.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + IMAGE + b"\r\n"
    )
    body = part * images + b"--b--\r\n"
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def answer_status(port: int, request: bytes) -> str:
    """'200', '503', ... or the name of the socket error."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.settimeout(30)
            sock.sendall(request)
            answer = read_all(sock)
    except OSError as error:
        return type(error).__name__
    return answer.split(b" ", 2)[1].decode() if answer else "closed without an answer"


@contextmanager
def running_service(
    model_store: Path, **settings: str
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`python -m app` on the tiny models with `settings` (VISION_*), until it is ready."""
    port = free_port()
    env = {
        **os.environ,
        "VISION_MODEL_DIR": str(model_store),
        "VISION_DEFAULT_CLASSIFIER": "tiny-colors",
        "VISION_DEFAULT_DETECTOR": "tiny-boxes",
        "VISION_DEFAULT_SEGMENTER": "tiny-regions",
        "VISION_PORT": str(port),
        "VISION_SHUTDOWN_DRAIN_S": "1.0",
        "VISION_AUTOTUNE_BATCH_SIZE": "false",
    } | {f"VISION_{name.upper()}": value for name, value in settings.items()}
    process = subprocess.Popen(
        [sys.executable, "-m", "app"],
        env=env,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, as a terminal would give it
    )
    try:
        deadline = time.monotonic() + 120
        while answer_status(port, READY) != "200":
            assert process.poll() is None, "the service exited during start-up"
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.2)
        yield process, port
    finally:
        process.kill()  # its workers, if any, drain and exit on their own (PDEATHSIG)
        process.wait(30)


@pytest.fixture(params=["1", "2"], ids=["one process", "two workers"])
def service(
    model_store: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    with running_service(model_store, workers=request.param) as started:
        yield started


def test_sigterm_answers_every_request_already_sent(
    service: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = service
    requests = (
        [raw_request("/classify", 16)] * 5
        + [raw_request("/detect")] * 2
        + [raw_request("/classify")] * 13
    )
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in requests]
    for sock, request in zip(sockets, requests, strict=True):
        sock.sendall(request)
    late: list[str] = []

    def arrive_every_20_ms() -> None:  # new connections keep coming until the listener closes
        while (status := answer_status(port, raw_request("/classify"))) != "ConnectionRefusedError":
            late.append(status)
            time.sleep(0.02)

    arrivals = threading.Thread(target=arrive_every_20_ms)
    arrivals.start()
    time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    readiness = answer_status(port, READY)
    answers = []
    for sock in sockets:
        with sock:
            sock.settimeout(30)
            answers.append(read_all(sock).split(b" ", 2)[1])
    arrivals.join(60)
    assert readiness == "503"
    assert answers == [b"200"] * len(requests)
    assert late and set(late) == {"200"}, late
    assert process.wait(60) == 0
