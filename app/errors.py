"""The ServiceError hierarchy: every failure the API reports, with its status and code."""

from typing import Any, ClassVar


class ServiceError(Exception):
    """A failure with an HTTP status and a stable machine-readable code."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    retry_after_s: ClassVar[int | None] = None

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the status calls for (Retry-After, WWW-Authenticate)."""
        if self.status_code == 401:
            return {"WWW-Authenticate": "Bearer"}
        if self.retry_after_s is not None:
            return {"Retry-After": str(self.retry_after_s)}
        return {}

    def to_body(self) -> dict[str, Any]:
        """The `{"code", "message", "details"}` object used in both error shapes."""
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidImage(ServiceError):
    """The bytes are not an image we can use (corrupt, truncated, not an image, too small)."""

    status_code = 400
    code = "invalid_image"


class InvalidRequest(ServiceError):
    """The request is malformed in a way the schema cannot express (e.g. a bad multipart body)."""

    status_code = 400
    code = "invalid_request"


class Unauthorized(ServiceError):
    """No valid API key."""

    status_code = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    """A valid API key used outside its scopes or models (the key itself is never echoed)."""

    status_code = 403
    code = "forbidden"


class ModelNotFound(ServiceError):
    """The named model is not in the store."""

    status_code = 404
    code = "model_not_found"


class WrongTask(ServiceError):
    """A detector asked to classify, or a classifier asked to detect."""

    status_code = 409
    code = "wrong_task"


class NotCalibrated(ServiceError):
    """A decision option was asked of a model whose card carries no calibration."""

    status_code = 409
    code = "not_calibrated"


class PayloadTooLarge(ServiceError):
    """The body or one file has more bytes than allowed."""

    status_code = 413
    code = "payload_too_large"


class ImageTooLarge(ServiceError):
    """The image declares more pixels than allowed (e.g. a decompression bomb)."""

    status_code = 413
    code = "image_too_large"


class TooManyImages(ServiceError):
    """More files in one request than allowed."""

    status_code = 413
    code = "too_many_images"


class UnsupportedMediaType(ServiceError):
    """The body is neither multipart/form-data nor image/*."""

    status_code = 415
    code = "unsupported_media_type"


class ValidationFailed(ServiceError):
    """A parameter or field failed validation."""

    status_code = 422
    code = "validation"


class RequestTimeout(ServiceError):
    """The client sent its body too slowly (silent too long, or below the minimum rate)."""

    status_code = 408
    code = "request_timeout"


class Overloaded(ServiceError):
    """The inference queue or the upload budget is full; the client should retry shortly."""

    status_code = 503
    code = "overloaded"
    retry_after_s = 1


class NotReady(ServiceError):
    """Models are not loaded and warmed up yet, or the service is shutting down."""

    status_code = 503
    code = "not_ready"
    retry_after_s = 2


class InferenceTimeout(ServiceError):
    """The answer did not come within the request timeout."""

    status_code = 504
    code = "timeout"


class InternalError(ServiceError):
    """A bug or unexpected failure; logged with the request id, never with a stack trace."""

    status_code = 500
    code = "internal"


class ModelLoadError(Exception):
    """A model in the store cannot be served (bad hash, bad card, unloadable archive)."""


class GalleryNotFound(ServiceError):
    """The named gallery does not exist."""

    status_code = 404
    code = "gallery_not_found"


class ProductNotFound(ServiceError):
    """The gallery has no product with that id."""

    status_code = 404
    code = "product_not_found"


class GalleryConflict(ServiceError):
    """The gallery exists with another model, or its model's archive changed since it was built."""

    status_code = 409
    code = "gallery_conflict"


class CannotEmbed(ServiceError):
    """The model's card has no embedding output, so it cannot fill or search a gallery."""

    status_code = 409
    code = "cannot_embed"


class CannotExplain(ServiceError):
    """`explain=true` was asked of a model whose card has no activation-map outputs."""

    status_code = 409
    code = "cannot_explain"


class GalleryFull(ServiceError):
    """The product or the gallery would pass its reference or product bound."""

    status_code = 413
    code = "gallery_full"


class ReloadRefused(ServiceError):
    """A reload found nothing it could switch to (the store is unreadable or nothing loads)."""

    status_code = 409
    code = "reload_refused"
