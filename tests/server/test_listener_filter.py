"""At the end of a drain the listener stops completing handshakes before its backlog is emptied."""

import socket
import sys

import pytest

from app.server.worker import refuse_new_handshakes

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="a socket filter is Linux's")

LOOPBACK = "127.0.0.1"


def test_no_new_handshake_completes_but_the_backlog_is_kept() -> None:
    with socket.create_server((LOOPBACK, 0), backlog=8) as listener:
        port = listener.getsockname()[1]
        waiting = socket.create_connection((LOOPBACK, port), timeout=2)  # in the backlog
        assert refuse_new_handshakes(listener.fileno())
        with socket.socket() as late:
            late.settimeout(0.5)
            with pytest.raises(TimeoutError):  # its SYN is dropped: no connection to reset
                late.connect((LOOPBACK, port))
        accepted, _ = listener.accept()
        with waiting, accepted:
            waiting.sendall(b"ping")
            assert accepted.recv(4) == b"ping"  # a connection made before works on
    with socket.socket() as after_close, pytest.raises(ConnectionRefusedError):
        after_close.connect((LOOPBACK, port))  # refused, which a client can retry elsewhere
