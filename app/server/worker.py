"""One serving process: uvicorn with the guarded protocol and a graceful, lossless SIGTERM.

On the first SIGTERM or SIGINT the app is told to drain (/readyz answers 503 so load balancers
stop sending), the listener stays open for SHUTDOWN_DRAIN_S for requests already on their way,
then uvicorn's shutdown answers every accepted request and the process exits 0. A second
signal skips the rest of the drain. `python -m app` runs one (WORKERS=1) or several
(app/server/supervisor.py) on one listening socket.
"""

import asyncio
import ctypes
import logging
import os
import socket
import struct
import sys
import time
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from app.api.state import LIFECYCLE_KEY, Lifecycle
from app.config import Settings
from app.server.protocol import ServerLimits, guarded_protocol

logger = logging.getLogger(__name__)

# The app `python -m app` serves: listening at once while the models load behind it.
LISTENING_APP = "app.main:create_listening_app"
# The app of a worker that replaces one which died: its models load before it accepts.
LOADED_APP = "app.main:create_app"
# The exit status of a process whose models failed to load (uvicorn's STARTUP_FAILURE).
STARTUP_FAILED = 3


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first stop signal starts a drain instead of closing the listener."""

    def __init__(self, config: uvicorn.Config, drain_s: float) -> None:
        super().__init__(config)
        self.drain_s = drain_s
        self._exit_at: float | None = None
        self.failed: str | None = None  # the models failed to load after the listener opened

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._exit_at is not None or not self.started:
            super().handle_exit(sig, frame)  # a second signal, or before start: stop now
            return
        # Runs in a signal handler: only set flags here; the main loop's tick acts on them.
        self._exit_at = time.monotonic() + self.drain_s
        lifecycle = self.lifespan.state.get(LIFECYCLE_KEY)
        if isinstance(lifecycle, Lifecycle):
            lifecycle.draining = True

    async def on_tick(self, counter: int) -> bool:
        lifecycle = self.lifespan.state.get(LIFECYCLE_KEY)
        if isinstance(lifecycle, Lifecycle) and lifecycle.failed and not self.should_exit:
            self.failed, self.should_exit = lifecycle.failed, True  # as a failed start-up
        if self._exit_at is not None and not self.should_exit:
            if counter % 10 == 0:
                logger.info("draining: not ready, listener open until the drain ends")
            self.should_exit = time.monotonic() >= self._exit_at
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Connections the kernel completed but the loop has not accepted yet sit in the
        # listener's backlog; closing the listener would reset them. Accept them first, so
        # uvicorn's shutdown treats them like every open connection (a short grace for the
        # request on its way, then an answer).
        if self._exit_at is not None:
            for server in self.servers:
                for listener in server.sockets:
                    refuse_new_handshakes(listener.fileno())
            await self._adopt_backlog()
        await super().shutdown(sockets)

    async def _adopt_backlog(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.config

        def create_protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        adopted = 0
        for server in self.servers:
            for listener in server.sockets:
                for connection in _pending_connections(listener.fileno()):
                    await loop.connect_accepted_socket(create_protocol, connection)
                    adopted += 1
        if adopted:
            logger.info("accepted %d connection(s) waiting in the backlog before closing", adopted)


# Linux's SO_ATTACH_FILTER and a classic BPF program of one instruction: "return 0" (drop).
_SO_ATTACH_FILTER = 26
_DROP_EVERY_PACKET = struct.pack("HBBI", 0x06, 0, 0, 0)  # BPF_RET | BPF_K, k = 0


def refuse_new_handshakes(listener_fd: int) -> bool:
    """Make the listening socket drop every packet from now on; False where that is not Linux.

    Closing a listener resets the connections the kernel completed after the last accept. With
    this filter no new handshake completes (a SYN is dropped, its client retries it and then
    finds the port closed: refused, never reset), so the backlog can be emptied for good
    before the listener closes. Connections already completed are separate sockets and keep
    working: the filter is the listener's alone.
    """
    if sys.platform != "linux":
        return False
    program = ctypes.create_string_buffer(_DROP_EVERY_PACKET, len(_DROP_EVERY_PACKET))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }; the kernel copies
    # the program during the call.
    fprog = struct.pack("HL", 1, ctypes.addressof(program))
    with socket.socket(fileno=os.dup(listener_fd)) as listener:  # our own handle to close
        listener.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    return True


def _pending_connections(listener_fd: int) -> list[socket.socket]:
    """Every connection waiting in the backlog of the listening socket `listener_fd`."""
    listener = socket.socket(fileno=os.dup(listener_fd))  # our own handle: closing it is safe
    listener.setblocking(False)
    accepted: list[socket.socket] = []
    try:
        while True:
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return accepted
            connection.setblocking(False)
            accepted.append(connection)
    finally:
        listener.close()


def uvicorn_config(
    settings: Settings, app: ASGIApp | None = None, *, factory: str = LISTENING_APP
) -> uvicorn.Config:
    """uvicorn's config: our protocol and limits; the app given, or the one `factory` builds."""
    return uvicorn.Config(
        app or factory,
        factory=app is None,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http=guarded_protocol(ServerLimits.from_settings(settings)),
        log_level=settings.log_level.lower(),
        # Logging is ours (app/observability.py): one format for uvicorn's lines and ours,
        # and the access line is written by the request middleware with the request's facts.
        log_config=None,
        access_log=False,
        timeout_keep_alive=max(1, round(settings.keep_alive_timeout_s)),
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
        # uvicorn's own bound answers in plain text; the protocol refuses in JSON instead.
        limit_concurrency=None,
    )


def exit_status(server: DrainingServer) -> int:
    """0 after a complete drain; STARTUP_FAILED when the models failed to load."""
    return 0 if server.started and server.failed is None else STARTUP_FAILED


def serve_one(settings: Settings) -> int:
    """Serve in this process until stopped; its exit status."""
    server = DrainingServer(uvicorn_config(settings), settings.shutdown_drain_s)
    server.run()
    return exit_status(server)
