"""What a log line knows about the request it was written for (contextvars, no globals).

The request middleware sets the id; routes add what they learn (the model, the number of
images, the API key's name) for the access line. Batches capture the ids of the
requests they serve, so a slow or failed batch can be traced back.
"""

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(kw_only=True)
class RequestFacts:
    """One request's facts for its access line; filled in as the request is handled."""

    request_id: str
    model: str | None = None
    model_version: str | None = None
    images: int | None = None
    key_name: str | None = None  # the API key's name (from the key file), never the key


current_request: ContextVar[RequestFacts | None] = ContextVar("current_request", default=None)


def current_request_id() -> str | None:
    """The id of the request this code runs for, if any."""
    facts = current_request.get()
    return facts.request_id if facts else None


def note(**facts: str | int | None) -> None:
    """Record facts about the current request (ignored outside a request)."""
    current = current_request.get()
    if current is None:
        return
    for name, value in facts.items():
        setattr(current, name, value)
