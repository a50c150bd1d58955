"""uvicorn's httptools protocol with bounds: head size, header count, URL length, time, connections.

The limits sit where the bytes arrive, before any request object exists, so a 100 MB header
costs the server 64 KiB and one JSON answer, and idle or trickling sockets are closed on time.
Every refusal is answered in the service's error shape, then the connection is closed after a
short linger (our answer is not lost to a reset while the client is still sending).
"""

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from app.config import Settings

logger = logging.getLogger(__name__)

# How long a refused or shutting-down connection is kept to deliver the answer / let a request
# already on its way arrive, before it is closed.
LINGER_S = 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerLimits:
    """What one connection may send, and how slowly."""

    max_header_bytes: int
    max_header_count: int
    max_url_bytes: int
    header_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "ServerLimits":
        """The limits configured by VISION_* settings."""
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_header_count=settings.max_header_count,
            max_url_bytes=settings.max_url_bytes,
            header_timeout_s=settings.header_timeout_s,
            max_connections=settings.max_connections,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Refusal:
    """An answer given by the server itself, before or instead of the app."""

    status: int
    code: str
    message: str
    retry_after_s: int | None = None

    def to_bytes(self) -> bytes:
        """The full HTTP response, closing the connection."""
        body = json.dumps({"error": {"code": self.code, "message": self.message, "details": {}}})
        lines = [
            STATUS_LINE[self.status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n",
        ]
        if self.retry_after_s is not None:
            lines.append(b"retry-after: %d\r\n" % self.retry_after_s)
        return b"".join([*lines, b"\r\n", body.encode()])


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that broke a limit."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class _LingeringTransport:
    """The transport a request's cycle writes to: its close() waits out an unread body.

    An answer given before the body was read (413, 503) is followed by a close; closing with
    unread bytes makes the kernel send a reset, which can destroy the answer in flight.
    """

    def __init__(self, protocol: "GuardedHttpToolsProtocol") -> None:
        self._protocol = protocol
        self._transport = protocol.transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol.close_after_answer()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that enforces `limits`; set them with `guarded_protocol(limits)`."""

    limits: ClassVar[ServerLimits]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._closing = False
        self._in_body = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(
                Refusal(
                    status=503,
                    code="overloaded",
                    message="Too many open connections; retry shortly.",
                    retry_after_s=1,
                )
            )
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered and half-closed: the rest is dropped (see _linger)
        # Feed the head in slices no larger than what is left of its limit, so the parser
        # never buffers more than max_header_bytes of one request's head.
        while data and not self._refused:
            if not self._in_head:
                self._feed(data)
                return
            room = self.limits.max_header_bytes - self._head_bytes
            if room <= 0:
                limit = self.limits.max_header_bytes
                self._refuse(
                    Refusal(
                        status=431,
                        code="headers_too_large",
                        message=f"The request line and headers exceed {limit} bytes.",
                    )
                )
                return
            chunk, data = data[:room], data[room:]
            self._head_bytes += len(chunk)
            self._feed(chunk)

    def _feed(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # as uvicorn: serve it, ignoring e.g. h2c
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as error:
            cause = error.__cause__ or error.__context__  # httptools chains implicitly
            if isinstance(cause, _Refused):
                self._refuse(cause.refusal)
            else:
                self._refuse(
                    Refusal(status=400, code="invalid_request", message="Malformed HTTP request.")
                )

    def send_400_response(self, msg: str) -> None:
        self._refuse(Refusal(status=400, code="invalid_request", message=msg))

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._header_count = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            limit = self.limits.max_url_bytes
            raise _Refused(
                Refusal(status=414, code="uri_too_long", message=f"The URL exceeds {limit} bytes.")
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_header_count:
            limit = self.limits.max_header_count
            raise _Refused(
                Refusal(
                    status=431,
                    code="headers_too_large",
                    message=f"The request has more than {limit} headers.",
                )
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        self._cancel_head_timer()
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = _LingeringTransport(self)  # type: ignore[assignment]
            if self._closing:
                self.cycle.keep_alive = False  # answer it, then close: the server is stopping

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_body = False
        self._in_head = True
        self._head_bytes = 0

    def close_after_answer(self) -> None:
        """Close now if the request was read to its end; otherwise linger first."""
        if self._in_body:
            self._linger()
        else:
            self.transport.close()

    def shutdown(self) -> None:
        """Stop after the request in progress; an idle connection gets a short grace first.

        A request may already be on its way on an idle connection (sent, not yet read):
        closing at once would reset it, so it gets LINGER_S to arrive and is then answered.
        """
        self._closing = True
        if self._refused:
            return  # answered; its linger timer closes it
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        elif self._head_bytes == 0:
            self._unset_keepalive_if_required()
            self.loop.call_later(LINGER_S, self._close_if_idle)

    def _close_if_idle(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self._head_bytes == 0:
            self.transport.close()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.limits.header_timeout_s, self._on_head_timeout
            )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _on_head_timeout(self) -> None:
        self._head_timer = None
        if self._head_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()  # an idle connection: nothing to answer
            return
        if self._in_head:
            seconds = self.limits.header_timeout_s
            self._refuse(
                Refusal(
                    status=408,
                    code="request_timeout",
                    message=f"The request headers did not arrive within {seconds} s.",
                )
            )

    def _refuse(self, refusal: Refusal) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._cancel_head_timer()
        self._unset_keepalive_if_required()
        logger.info(
            "refused a connection from %s: %d %s", self.client, refusal.status, refusal.code
        )
        self.transport.write(refusal.to_bytes())
        self._linger()

    def _linger(self) -> None:
        # Half-close so the client reads our answer, drop what it still sends, and close when
        # it does (eof) or after LINGER_S.
        self._refused = True
        if self.transport.is_closing():
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


def guarded_protocol(limits: ServerLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to `limits`."""
    return type("ConfiguredHttpProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
