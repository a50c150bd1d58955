"""The service's error shape as an exception: status, stable code, message, details."""

from typing import Any

import httpx

# Codes the service gives one image (in a batch they are that image's `error`; a request of one
# image gets them as the whole answer). The client hands them back per image either way.
IMAGE_ERROR_CODES = frozenset({"invalid_image", "payload_too_large", "image_too_large"})


class VisionServeError(Exception):
    """A request the service refused or could not answer, as the service worded it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.request_id = request_id

    @property
    def is_image_error(self) -> bool:
        """Whether it concerns one uploaded image rather than the request."""
        return self.code in IMAGE_ERROR_CODES


def error_from(response: httpx.Response) -> VisionServeError:
    """The error a non-2xx answer carries (or a description of one not in our shape)."""
    request_id = response.headers.get("x-request-id")
    try:
        body = response.json()["error"]
        return VisionServeError(
            response.status_code,
            str(body["code"]),
            str(body["message"]),
            dict(body.get("details") or {}),
            request_id,
        )
    except (ValueError, KeyError, TypeError):
        text = response.text[:200]
        return VisionServeError(response.status_code, "http_error", text, request_id=request_id)
