"""The error shape: rendering a ServiceError, and documenting the errors in OpenAPI."""

from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from app.errors import ServiceError
from app.schemas import ErrorResponse

_ERRORS = {
    400: "invalid_image or invalid_request",
    401: "unauthorized",
    403: "forbidden (the API key lacks the route's scope or the model)",
    404: "model_not_found",
    408: "request_timeout (the body arrived too slowly)",
    409: "wrong_task",
    413: "payload_too_large, image_too_large or too_many_images",
    415: "unsupported_media_type",
    422: "validation",
    503: "overloaded (queue or upload budget full) or not_ready (with Retry-After)",
    504: "timeout",
    500: "internal",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": codes} for status, codes in _ERRORS.items()
}


def render_error(error: ServiceError, path: str = "") -> JSONResponse:
    """`{"error": {code, message, details}}` with the error's status and headers.

    Under /v2 the Open Inference Protocol's shape instead, `{"error": "code: message"}`, the
    string that KServe and Triton clients read.
    """
    if is_protocol_path(path):
        body: object = f"{error.code}: {error.message}"
    else:
        body = jsonable_encoder(error.to_body())
    return JSONResponse(
        {"error": body},
        status_code=error.status_code,
        headers=error.headers or None,
    )


def is_protocol_path(path: str) -> bool:
    """Whether `path` is one of the Open Inference Protocol's (/v2 and below)."""
    return path == "/v2" or path.startswith("/v2/")
