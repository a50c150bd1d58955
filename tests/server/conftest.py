"""A live uvicorn server (our protocol, limits and app) on loopback, in a thread."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from app.config import Settings
from app.main import create_app
from app.server.worker import uvicorn_config


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveServer:
    """Where the server listens."""

    host: str
    port: int

    def connect(self) -> socket.socket:
        """A raw TCP connection to the server, with a 10 s read timeout."""
        sock = socket.create_connection((self.host, self.port), timeout=10)
        sock.settimeout(10)
        return sock

    def exchange(self, request: bytes) -> bytes:
        """Send `request` on a new connection; everything the server sends until it closes."""
        with self.connect() as sock:
            sock.sendall(request)
            return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    """Read until the peer closes (or resets after its answer)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def status_and_error(answer: bytes) -> tuple[int, str]:
    """The status code and error code of a raw HTTP answer in our error shape."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower()
    return status, json.loads(body)["error"]["code"]


def run_live_server(settings: Settings) -> Iterator[LiveServer]:
    """Serve `create_app(settings)` through `uvicorn_config(settings)` until the test ends."""
    config = uvicorn_config(settings.model_copy(update={"port": 0}), create_app(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        assert thread.is_alive(), "the server failed to start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(host="127.0.0.1", port=port)
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def server_settings(settings: Settings) -> Settings:
    """Small limits and short timeouts that tests reach quickly."""
    return settings.model_copy(
        update={
            "max_header_bytes": 4096,
            "max_header_count": 20,
            "max_url_bytes": 1024,
            "header_timeout_s": 0.5,
            "body_timeout_s": 0.5,
            "max_connections": 4,
        }
    )


@pytest.fixture
def live(server_settings: Settings) -> Iterator[LiveServer]:
    """The server with `server_settings`."""
    yield from run_live_server(server_settings)
