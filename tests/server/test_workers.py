"""WORKERS=2: the workers serve through the guarded protocol; one killed is replaced.

The drain with two workers is `test_shutdown.py`'s test, run with both settings.
"""

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from app.server.supervisor import shutdown_status
from app.server.worker import STARTUP_FAILED
from tests.server.conftest import LiveServer, read_all, status_and_error
from tests.server.test_shutdown import READY, answer_status, raw_request, running_service


def worker_pids(parent_pid: int) -> set[int]:
    """The parent's spawned workers (its multiprocessing resource tracker left out)."""
    children = Path(f"/proc/{parent_pid}/task/{parent_pid}/children").read_text().split()
    workers = set()
    for pid in children:
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.add(int(pid))
        except FileNotFoundError:
            continue  # ended since the listing
    return workers


def wait_for(parent_pid: int, differs_from: set[int]) -> set[int]:
    """The two workers, once their pids are not `differs_from`."""
    deadline = time.monotonic() + 60
    while len(pids := worker_pids(parent_pid)) != 2 or pids & differs_from:
        assert time.monotonic() < deadline, f"workers {pids}, still {differs_from}"
        time.sleep(0.1)
    return pids


def test_a_header_over_the_limit_is_431_in_our_shape(model_store: Path) -> None:
    with running_service(model_store, workers="2", max_header_bytes="4096") as (_, port):
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n"
        server = LiveServer(host="127.0.0.1", port=port)
        answers = [status_and_error(server.exchange(request)) for _ in range(6)]
    assert answers == [(431, "headers_too_large")] * 6


@pytest.mark.slow  # 24-40 s: four workers load in turn on 2 cores
def test_killed_workers_are_replaced_and_their_replacements_serve(model_store: Path) -> None:
    with running_service(model_store, workers="2") as (process, port):
        first = wait_for(process.pid, set())
        victim, survivor = sorted(first)
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for(process.pid, {victim})
        assert survivor in replaced
        # With the other first worker gone too, only replacements are left to answer.
        os.kill(survivor, signal.SIGKILL)
        wait_for(process.pid, first)
        assert answer_status(port, raw_request("/classify")) == "200"
        assert answer_status(port, READY) == "200"
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0  # the replacements drained like the first workers


def test_ctrl_c_at_a_terminal_drains_each_worker_once(model_store: Path) -> None:
    """SIGINT to the whole process group: every request answered, the parent exits 0."""
    with running_service(model_store, workers="2") as (process, port):
        requests = [raw_request("/classify", 16)] * 4 + [raw_request("/classify")] * 4
        sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in requests]
        for sock, request in zip(sockets, requests, strict=True):
            sock.sendall(request)
        time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
        answers = []
        for sock in sockets:
            with sock:
                sock.settimeout(30)
                answers.append(read_all(sock).split(b" ", 2)[1])
        assert answers == [b"200"] * len(requests)
        assert process.wait(60) == 0


@pytest.mark.slow  # about 20 s: three workers load on 2 cores
def test_a_stop_while_a_replacement_starts_is_a_clean_exit(model_store: Path) -> None:
    """The replacement is still importing when the stop comes: it had nothing to drain."""
    with running_service(model_store, workers="2") as (process, _):
        first = wait_for(process.pid, set())
        os.kill(min(first), signal.SIGKILL)
        while not worker_pids(process.pid) - first:
            time.sleep(0.05)
        time.sleep(0.3)  # the replacement is importing: no signal handlers yet
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0


@pytest.mark.parametrize(
    ("workers", "stop_signals", "expected"),
    [
        ([0, 0], [signal.SIGTERM], 0),
        ([0, -signal.SIGTERM], [signal.SIGTERM], 0),  # stopped before it could serve
        ([0, -signal.SIGKILL], [signal.SIGTERM], 1),  # killed mid-drain: answers may be lost
        ([0, 1], [signal.SIGTERM], 1),
        ([0, STARTUP_FAILED], [signal.SIGTERM], STARTUP_FAILED),
        ([-signal.SIGINT, 0], [signal.SIGINT, signal.SIGINT], 128 + signal.SIGINT),
    ],
)
def test_the_parents_exit_status_says_whether_every_worker_drained(
    workers: list[int | None], stop_signals: list[int], expected: int
) -> None:
    assert shutdown_status(workers, stop_signals) == expected
