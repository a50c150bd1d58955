"""Pure-ASGI middleware: request context and metrics, and the guard on request bodies."""

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.responses import render_error
from app.errors import Overloaded, PayloadTooLarge, RequestTimeout, ServiceError
from app.request_context import RequestFacts, current_request

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("app.access")

REQUEST_ID_HEADER = "x-request-id"
# Printable ASCII without spaces: anything else would be echoed garbled or split a log line.
_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,64}")
CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection first"
# Bodies at least this large hand freed memory back to the OS when their request ends.
RELEASE_AFTER_BYTES = 8 * 1024 * 1024


class RequestContextMiddleware:
    """Tags each request with an id, records its status and latency, writes its access line.

    A client that disconnects mid-request is logged once at INFO and counted as 499.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics_requests: Callable[[str, int, float, str | None], None],
        access_log: bool = True,
    ) -> None:
        self.app = app
        self.record = metrics_requests
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"")
        valid = _REQUEST_ID.fullmatch(offered) is not None
        request_id = offered.decode("ascii") if valid else _new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        facts = RequestFacts(request_id=request_id)
        token = current_request.set(facts)
        status = 500

        async def tagged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append(
                    (REQUEST_ID_HEADER.encode(), request_id.encode())
                )
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, tagged_send)
        except ClientDisconnect:
            status = CLIENT_CLOSED
            logger.info(
                "client closed the connection during %s (request %s)", scope["path"], request_id
            )
        finally:
            current_request.reset(token)
            route = getattr(scope.get("route"), "path", "unmatched")
            seconds = time.perf_counter() - started
            self.record(route, status, seconds, facts.key_name)
            if self.access_log:
                _log_access(scope, route, status, seconds, facts)


def _log_access(scope: Scope, route: str, status: int, seconds: float, facts: RequestFacts) -> None:
    """One line per answered request, with what an operator searches by."""
    fields: dict[str, object] = {
        "request_id": facts.request_id,
        "method": scope["method"],
        "route": route,
        "status": status,
        "latency_ms": round(seconds * 1000, 1),
        "model": facts.model,
        "model_version": facts.model_version,
        "images": facts.images,
        "key_name": facts.key_name,
        "client": (scope.get("client") or ("-",))[0],
    }
    shown = {name: value for name, value in fields.items() if value is not None}
    served = f" {facts.model}@{facts.model_version}" if facts.model else ""
    images = f" {facts.images} image(s)" if facts.images is not None else ""
    access_logger.info(
        "%s %s %d %.1f ms%s%s",
        scope["method"],
        scope["path"],
        status,
        seconds * 1000,
        served,
        images,
        extra={"fields": shown},
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class BodyLimits:
    """How large and how slow request bodies may be, one by one and all together."""

    max_body_bytes: int
    max_image_body_bytes: int  # a raw image/* body carries one image
    max_receiving_bytes: int
    body_timeout_s: float
    min_body_rate_bytes_s: int


class ReceivingBudget:
    """Bytes of request bodies being received at once (the event loop is its only user)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def take(self, count: int) -> bool:
        """Take `count` bytes of the budget, or nothing when they do not fit."""
        if self.in_use + count > self.limit:
            return False
        self.in_use += count
        return True

    def give_back(self, count: int) -> None:
        """Return bytes taken earlier."""
        self.in_use -= count


class BodyGuardMiddleware:
    """Refuses oversized bodies as early as their headers or stream tell, bounds the bytes
    being received at once (503), times out silent or trickling senders (408), and closes the
    connection whenever an answer leaves part of the body unread."""

    def __init__(
        self, app: ASGIApp, limits: BodyLimits, release_memory: Callable[[], None]
    ) -> None:
        self.app = app
        self.limits = limits
        self.budget = ReceivingBudget(limits.max_receiving_bytes)
        self.release_memory = release_memory
        self._releasing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _GuardedBody(scope, receive, send, self.limits, self.budget)
        refusal = body.early_refusal()
        if refusal is not None:
            await render_error(refusal, scope["path"])(scope, body.receive, body.send)
            return
        try:
            await self.app(scope, body.receive, body.send)
        finally:
            self.budget.give_back(body.taken)
            if body.received >= RELEASE_AFTER_BYTES:
                self._release_soon()

    def _release_soon(self) -> None:
        if self._releasing:
            return
        self._releasing = True
        future = asyncio.get_running_loop().run_in_executor(None, self.release_memory)
        future.add_done_callback(lambda _: setattr(self, "_releasing", False))


class _GuardedBody:
    """One request's body as the app reads it, with the limits applied chunk by chunk."""

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        limits: BodyLimits,
        budget: ReceivingBudget,
    ) -> None:
        headers = dict(scope["headers"])
        self._receive = receive
        self._send = send
        self._budget = budget
        self._timeout_s = limits.body_timeout_s
        self._min_rate = limits.min_body_rate_bytes_s
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        is_image = media_type.startswith(b"image/")
        self.limit = limits.max_image_body_bytes if is_image else limits.max_body_bytes
        declared = headers.get(b"content-length", b"")
        self.declared = int(declared) if declared.isdigit() else None
        self.pending = bool(self.declared) or b"chunked" in headers.get(b"transfer-encoding", b"")
        self.received = 0
        self.taken = 0
        self._started: float | None = None

    def early_refusal(self) -> ServiceError | None:
        """413 or 503 before a byte of the body is read, when its declared size says so."""
        if self.declared is None:
            return None
        if self.declared > self.limit:
            return PayloadTooLarge(
                f"The request body has {self.declared} bytes; the limit is {self.limit}.",
                bytes=self.declared,
                limit=self.limit,
            )
        if not self._budget.take(self.declared):
            return _receiving_overloaded(self._budget.limit)
        self.taken = self.declared
        return None

    async def receive(self) -> Message:
        """The next body chunk, within the size, budget and time limits."""
        if self._started is None:
            self._started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s):
                message = await self._receive()
        except TimeoutError:
            raise RequestTimeout(
                f"No body bytes arrived for {self._timeout_s} s.", timeout_s=self._timeout_s
            ) from None
        self._count(len(message.get("body", b"")))
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.pending = False
        return message

    def _count(self, size: int) -> None:
        self.received += size
        if self.received > self.limit:
            raise PayloadTooLarge(f"The request body exceeds {self.limit} bytes.", limit=self.limit)
        if self.received > self.taken:  # a body without Content-Length takes as it comes
            if not self._budget.take(self.received - self.taken):
                raise _receiving_overloaded(self._budget.limit)
            self.taken = self.received
        elapsed = time.monotonic() - (self._started or 0.0)
        if elapsed > self._timeout_s and self.received < self._min_rate * elapsed:
            raise RequestTimeout(
                f"The body arrives slower than {self._min_rate} bytes/s.",
                min_rate_bytes_s=self._min_rate,
            )

    async def send(self, message: Message) -> None:
        """Pass the answer on; close the connection after it if the body was not all read."""
        if message["type"] == "http.response.start" and self.pending:
            message.setdefault("headers", []).append((b"connection", b"close"))
        await self._send(message)


def _receiving_overloaded(limit: int) -> Overloaded:
    return Overloaded(
        f"The service is receiving {limit} bytes of uploads already; retry shortly.",
        receiving_limit=limit,
    )


def _new_request_id() -> str:
    """128 random bits as 32 hex digits, like uuid4().hex, without its system call.

    uuid4 reads os.urandom, which gives up the GIL; under load the event loop then waited for
    the inference and decode threads to hand it back (8% of the loop's samples, py-spy). An id
    needs uniqueness, not secrecy: the random module's generator is seeded from the system and
    seeded again in a forked child.
    """
    return f"{random.getrandbits(128):032x}"
