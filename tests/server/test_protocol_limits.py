"""Limits enforced where the bytes arrive: head size, header count, URL, time, connections."""

import socket
import time

from tests.server.conftest import LiveServer, read_all, status_and_error

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_a_huge_header_is_refused_431_without_reading_it_all(live: LiveServer) -> None:
    with live.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:  # the server answers and stops reading long before 8 MB
            for _ in range(128):
                sock.sendall(b"A" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_all(sock)
    assert status_and_error(answer) == (431, "headers_too_large")
    assert live.exchange(HEALTHZ).startswith(b"HTTP/1.1 200")


def test_too_many_headers_are_refused_431(live: LiveServer) -> None:
    headers = b"".join(b"X-H%d: 1\r\n" % index for index in range(30))
    answer = live.exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert status_and_error(answer) == (431, "headers_too_large")


def test_a_long_url_is_refused_414(live: LiveServer) -> None:
    answer = live.exchange(b"GET /healthz?" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_and_error(answer) == (414, "uri_too_long")


def test_malformed_http_is_answered_in_the_error_shape(live: LiveServer) -> None:
    answer = live.exchange(b"NOT HTTP AT ALL\r\n\r\n")
    assert status_and_error(answer) == (400, "invalid_request")


def test_an_idle_connection_is_closed_after_the_header_timeout(live: LiveServer) -> None:
    with live.connect() as sock:
        assert read_all(sock) == b""  # closed by the server, not by our 10 s timeout


def test_a_trickled_head_is_answered_408(live: LiveServer) -> None:
    with live.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        answer = read_all(sock)
    assert status_and_error(answer) == (408, "request_timeout")


def test_a_silent_body_is_answered_408(live: LiveServer) -> None:
    with live.connect() as sock:
        sock.sendall(
            b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 1000\r\n\r\nxx"
        )
        answer = read_all(sock)
    assert status_and_error(answer) == (408, "request_timeout")


def test_connections_past_the_limit_are_refused_503(live: LiveServer) -> None:
    held = [live.connect() for _ in range(4)]
    try:
        time.sleep(0.1)  # let the server accept them
        with live.connect() as extra:
            extra.sendall(HEALTHZ)
            answer = read_all(extra)
    finally:
        for sock in held:
            sock.close()
    assert status_and_error(answer) == (503, "overloaded")
    assert b"retry-after: 1" in answer.lower()


def test_an_oversized_raw_image_is_refused_before_its_body(live: LiveServer) -> None:
    with live.connect() as sock:
        sock.sendall(
            b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 3000000\r\n\r\n"
        )
        answer = read_all(sock)  # no body sent: only an early answer can arrive
    assert status_and_error(answer) == (413, "payload_too_large")


def test_an_early_refusal_survives_a_client_still_sending(live: LiveServer) -> None:
    with live.connect() as sock:
        sock.sendall(
            b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 50000000\r\n\r\n"
        )
        try:  # a client that only reads once its upload is sent, as many do
            for _ in range(8):
                sock.sendall(b"\0" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_all(sock)
    assert status_and_error(answer) == (413, "payload_too_large")


def test_a_client_gone_mid_upload_is_counted_499_not_500(live: LiveServer) -> None:
    with live.connect() as sock:
        sock.sendall(
            b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 1048576\r\n\r\nxx"
        )
        time.sleep(0.2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    deadline = time.monotonic() + 10
    metrics = b""
    while b'status="499"' not in metrics and time.monotonic() < deadline:
        time.sleep(0.1)
        metrics = live.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b'visionserve_http_requests_total{key="-",route="/classify",status="499"} 1.0' in metrics
    assert b'status="500"' not in metrics


def test_an_h2c_upgrade_offer_is_ignored_and_served(live: LiveServer) -> None:
    answer = live.exchange(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: h2c\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200")
