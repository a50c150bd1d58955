"""An ASGI app that refuses every request at once (503, body unread): the overload floor.

`python -m bench.stress --probes overload-floor` serves it with uvicorn on the service's stack
(uvloop, httptools) and sends it the overload probe's traffic. Nothing runs but the refusals, so
its 503 latency at the client is the least any Python service on this stack can reach on this
machine with that client; ours is measured next to it.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

_BODY = b'{"error":{"code":"overloaded","message":"Refused: the overload floor."}}'
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"retry-after", b"1"),
    (b"content-length", str(len(_BODY)).encode()),
]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """503 for every HTTP request, before its body is read."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 503, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
