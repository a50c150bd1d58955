"""Count each HTTP request under the reader epoch it began in (see app/runtime/readers.py)."""

from starlette.types import ASGIApp, Receive, Scope, Send

from app.runtime.readers import ReaderEpochs


class ModelReadersMiddleware:
    """Holds a request in its epoch until it has answered, so its models outlive it."""

    def __init__(self, app: ASGIApp, epochs: ReaderEpochs) -> None:
        self.app = app
        self.epochs = epochs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        epoch = self.epochs.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.epochs.leave(epoch)
