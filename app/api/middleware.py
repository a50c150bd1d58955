"""One pure-ASGI middleware: request id, body-size limit, and per-route metrics."""

import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.responses import render_error
from app.errors import PayloadTooLarge
from app.observability import ServiceMetrics

REQUEST_ID_HEADER = "x-request-id"


class RequestContextMiddleware:
    """Tags each request with an id, caps its body, and records its status and latency."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")[:64]
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            # Refuse before reading a byte of the body.
            refusal = render_error(
                PayloadTooLarge(
                    f"The request body has {int(declared)} bytes; "
                    f"the limit is {self.max_body_bytes}.",
                    bytes=int(declared),
                    limit=self.max_body_bytes,
                )
            )
            await refusal(scope, receive, send)
            self.metrics.requests.labels("unmatched", "413").inc()
            return
        status = 500
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise PayloadTooLarge(
                    f"The request body exceeds {self.max_body_bytes} bytes.",
                    limit=self.max_body_bytes,
                )
            return message

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
            await self.app(scope, capped_receive, tagged_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.request_seconds.labels(path).observe(time.perf_counter() - started)
