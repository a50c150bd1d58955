"""The SIGTERM probe: requests already sent, and connections still arriving, at the signal."""

import itertools
import signal
import socket
import threading
import time

from bench.loadgen import multipart_request
from bench.photos import load_photos
from bench.service import LOOPBACK, Service, exchange, get, read_until_closed, status_of


def requests_in_flight() -> list[bytes]:
    """20 requests: 5 with 16 images, 2 to /detect, 13 single images."""
    photos = load_photos()
    sixteen = list(itertools.islice(itertools.cycle(photos), 16))
    one = photos[1:2]
    return (
        [multipart_request("x", 0, "/classify", sixteen)] * 5
        + [multipart_request("x", 0, "/detect", one)] * 2
        + [multipart_request("x", 0, "/classify", one)] * 13
    )


def sigterm(service: Service, arrivals: bool) -> dict[str, str]:
    """SIGTERM 50 ms after 20 complete requests (and, with `arrivals`, a new one every 20 ms)."""
    sockets = [socket.create_connection((LOOPBACK, service.port), timeout=60) for _ in range(20)]
    for sock, request in zip(sockets, requests_in_flight(), strict=True):
        sock.sendall(request)
    late: list[str] = []
    stop = threading.Event()
    arriving = threading.Thread(target=_arrive, args=(service.port, late, stop))
    if arrivals:
        arriving.start()
    time.sleep(0.05)
    service.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    readiness, _, error = exchange(service.port, get("/readyz"), timeout_s=10)
    answers = [_answer(sock) for sock in sockets]
    exit_status = service.process.wait(120)
    stop.set()
    if arrivals:
        arriving.join(60)
    lost = [answer for answer in answers if answer != "200"]
    report = {
        "answers lost": f"{len(lost)} of 20 {sorted(set(lost))}",
        "/readyz 200 ms after SIGTERM": str(readiness or error),
        "exit status": str(exit_status),
    }
    if arrivals:
        resets = sum(outcome in {"ConnectionResetError", "no answer"} for outcome in late)
        answered = sum(outcome == "200" for outcome in late)
        report["late connections"] = f"{len(late)}: {answered} answered, {resets} reset"
    return report


def _answer(sock: socket.socket) -> str:
    with sock:
        try:
            return str(status_of(read_until_closed(sock)) or "no answer")
        except OSError as error:
            return type(error).__name__


def _arrive(port: int, outcomes: list[str], stop: threading.Event) -> None:
    """Open a new connection with one request every 20 ms until the listener refuses."""
    request = multipart_request("x", 0, "/classify", load_photos()[1:2])
    refused = threading.Event()

    def one() -> None:
        status, _, error = exchange(port, request, timeout_s=60)
        if error == "ConnectionRefusedError":
            refused.set()  # the listener has closed: the drain is over
        else:
            outcomes.append(str(status) if status else error or "no answer")

    threads = []
    while not (stop.is_set() or refused.is_set()):
        threads.append(threading.Thread(target=one))
        threads[-1].start()
        time.sleep(0.02)
    for thread in threads:
        thread.join(60)
