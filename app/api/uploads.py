"""Read the request body into uploads: multipart `image` fields, or one raw image/* body."""

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

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


async def read_uploads(
    request: Request, settings: Settings, on_image: Callable[[], None]
) -> list[Upload]:
    """The uploads of an image request, or the precise error for a malformed body.

    `on_image` runs as each image begins to arrive, before its bytes are read; what it raises
    (a full queue's 503) ends the reading there.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        return await _read_multipart(request, settings, on_image)
    if media_type.startswith("image/"):
        on_image()
        return [Upload(filename=None, data=await request.body())]
    raise UnsupportedMediaType(
        f"Send multipart/form-data with field {IMAGE_FIELD!r}, or a raw image/* body; "
        f"got {media_type or 'no content type'}.",
        content_type=media_type,
    )


class _ImageAwareParser(MultiPartParser):
    """Starlette's streaming multipart parser, calling back as each image field begins."""

    def __init__(
        self,
        request: Request,
        stream: AsyncGenerator[bytes],
        on_image: Callable[[], None],
        *,
        max_files: int,
    ) -> None:
        # Text fields are allowed beside the images (clients send names, ids), a few more.
        super().__init__(request.headers, stream, max_files=max_files, max_fields=max_files + 16)
        self._on_image = on_image

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part = self._current_part
        if part.file is not None and part.field_name == IMAGE_FIELD:
            self._on_image()


async def _read_multipart(
    request: Request, settings: Settings, on_image: Callable[[], None]
) -> list[Upload]:
    limit = settings.max_images_per_request
    try:
        async with aclosing(request.stream()) as stream:
            form = await _ImageAwareParser(request, stream, on_image, max_files=limit).parse()
    except MultiPartException as error:
        message = str(error.message)
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
