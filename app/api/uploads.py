"""Read the request body into uploads: multipart `image` fields, or one raw image/* body."""

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from app.config import Settings
from app.errors import (
    InvalidRequest,
    PayloadTooLarge,
    TooManyImages,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.services.uploads import Upload

IMAGE_FIELD = "image"

# Shown in /docs: the two body shapes the image routes accept.
IMAGE_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [IMAGE_FIELD],
                    "properties": {
                        IMAGE_FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more images; repeat the field for a batch.",
                        }
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


async def read_uploads(request: Request, settings: Settings) -> list[Upload]:
    """The uploads of an image request, or the precise error for a malformed body."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        return await _read_multipart(request, settings)
    if media_type.startswith("image/"):
        return [Upload(filename=None, data=await request.body())]
    raise UnsupportedMediaType(
        f"Send multipart/form-data with field {IMAGE_FIELD!r}, or a raw image/* body; "
        f"got {media_type or 'no content type'}.",
        content_type=media_type,
    )


async def _read_multipart(request: Request, settings: Settings) -> list[Upload]:
    limit = settings.max_images_per_request
    try:
        form = await request.form(max_files=limit, max_fields=limit + 16)
    except (HTTPException, MultiPartException) as error:
        message = str(getattr(error, "detail", None) or error)
        if "too many files" in message.lower():
            raise TooManyImages(f"At most {limit} images per request.", limit=limit) from error
        raise InvalidRequest(f"The multipart body is malformed: {message}") from error
    try:
        return await _collect_images(form, settings.max_image_bytes)
    finally:
        await form.close()  # spooled temporary files


async def _collect_images(form: FormData, max_bytes: int) -> list[Upload]:
    values = form.getlist(IMAGE_FIELD)
    files = [value for value in values if isinstance(value, UploadFile)]
    if not values:
        raise ValidationFailed(
            f"The multipart body has no {IMAGE_FIELD!r} field.",
            field=IMAGE_FIELD,
            fields_sent=sorted(set(form.keys())),
        )
    if len(files) != len(values):
        raise ValidationFailed(
            f"Field {IMAGE_FIELD!r} must carry files, not text values.", field=IMAGE_FIELD
        )
    return [await _read_file(file, max_bytes) for file in files]


async def _read_file(file: UploadFile, max_bytes: int) -> Upload:
    if file.size is not None and file.size > max_bytes:
        error = PayloadTooLarge(
            f"The image has {file.size} bytes; the limit is {max_bytes}.",
            bytes=file.size,
            limit=max_bytes,
        )
        return Upload(filename=file.filename, data=b"", error=error)
    return Upload(filename=file.filename, data=await file.read())
