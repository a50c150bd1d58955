"""Bytes -> oriented RGB image, or a precise InvalidImage / ImageTooLarge error.

All input limits on image content live here. Pillow's format plugins raise a zoo of exception
types on malformed input (OSError, SyntaxError, ValueError, struct.error, ...), so each decoding
step is guarded and mapped to one of our errors with the reason in `details`.
"""

import io
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import ImageTooLarge, InvalidImage, PayloadTooLarge

# Decoders we expose to the internet: the common photo formats, nothing exotic.
# (Multi-picture JPEGs open through the JPEG plugin and report format "MPO".)
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_TRANSPARENT_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION_TAG = 0x0112
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_END_MARKERS = {"PNG": b"IEND", "JPEG": b"\xff\xd9", "GIF": b";"}


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Bounds on what one uploaded image may cost."""

    max_bytes: int
    max_pixels: int
    min_side: int


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An upright RGB image plus the upright size of the original upload."""

    image: Image.Image
    width: int
    height: int


def decode_image(data: bytes, limits: ImageLimits, draft_size: int | None = None) -> DecodedImage:
    """Decode, bound, orient and convert one upload to RGB.

    `draft_size` lets libjpeg scale by 1/2, 1/4 or 1/8 while decoding, keeping both sides at
    least that large: far less work when the model needs fewer pixels than the photo has.
    """
    image = read_header(data, limits)
    width, height = image.size
    if draft_size is not None and image.format in ("JPEG", "MPO"):
        image.draft(None, (draft_size, draft_size))
    _load_pixels(image)
    upright_size = _upright_size(image, width, height)
    image = _apply_orientation(image)
    return DecodedImage(image=to_rgb(image), width=upright_size[0], height=upright_size[1])


def read_header(data: bytes, limits: ImageLimits) -> Image.Image:
    """Check the byte count, open the header and bound its dimensions; no pixels are decoded."""
    _check_byte_count(data, limits)
    image = _open(data)
    _check_dimensions(*image.size, limits)
    return image


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) once the EXIF orientation is applied."""
    return _upright_size(image, *image.size)


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1-8); 1 when absent or unreadable, as the decoder treats it."""
    return _orientation(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode Pillow reads to 8-bit RGB; transparency is composited onto white."""
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own I;16 -> L conversion clips at 255; scale the 16-bit range instead.
        pixels = np.asarray(image, dtype=np.uint32) >> 8
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        pixels = np.clip(np.asarray(image, dtype=np.float32), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
    if image.mode in _TRANSPARENT_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _check_byte_count(data: bytes, limits: ImageLimits) -> None:
    if not data:
        raise InvalidImage("The upload is empty (0 bytes).", reason="empty")
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(
            f"The image has {len(data)} bytes; the limit is {limits.max_bytes}.",
            bytes=len(data),
            limit=limits.max_bytes,
        )


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(
            f"The image declares too many pixels: {error}", reason="bomb"
        ) from error
    except UnidentifiedImageError as error:
        _raise_for_broken_header(data)
        kind = sniff_non_image(data)
        raise InvalidImage(
            f"The upload is {kind}, not an image in a supported format "
            f"({', '.join(ALLOWED_FORMATS)}).",
            reason="not_an_image",
            detected=kind,
        ) from error
    except Exception as error:  # malformed headers raise arbitrary types (module docstring)
        reason = _failure_reason(error)
        raise InvalidImage(f"The image header is {reason}: {error}", reason=reason) from error


def _check_dimensions(width: int, height: int, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImage(f"The image has no pixels ({width}x{height}).", reason="zero_size")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} = {width * height} pixels; "
            f"the limit is {limits.max_pixels}.",
            width=width,
            height=height,
            limit=limits.max_pixels,
        )
    if min(width, height) < limits.min_side:
        raise InvalidImage(
            f"The image is {width}x{height}; both sides must be at least {limits.min_side} px.",
            reason="too_small",
            width=width,
            height=height,
        )


def _load_pixels(image: Image.Image) -> None:
    try:
        image.load()
    except Exception as error:  # decoders raise arbitrary types (module docstring)
        reason = _failure_reason(error)
        raise InvalidImage(
            f"The image data is {reason}: {error}", reason=reason, format=image.format
        ) from error


def _failure_reason(error: Exception) -> str:
    return "truncated" if "truncated" in str(error).lower() else "corrupt"


def _upright_size(image: Image.Image, width: int, height: int) -> tuple[int, int]:
    orientation = _orientation(image)
    return (height, width) if orientation in _TRANSPOSED_ORIENTATIONS else (width, height)


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # a corrupt EXIF block must not cost the whole image
        return 1
    return value if isinstance(value, int) else 1


def _apply_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception as error:
        raise InvalidImage(
            f"The EXIF orientation cannot be applied: {error}", reason="exif"
        ) from error


def _raise_for_broken_header(data: bytes) -> None:
    """An image signature Pillow would not open: say what is wrong with that header."""
    fmt = next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)
    if fmt is None:
        return
    if fmt == "PNG" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        if width == 0 or height == 0:
            raise InvalidImage(f"The image has no pixels ({width}x{height}).", reason="zero_size")
    end_marker = _END_MARKERS.get(fmt)
    if end_marker is not None and end_marker not in data[-64:]:
        raise InvalidImage(f"The {fmt} file is truncated.", reason="truncated", format=fmt)
    raise InvalidImage(f"The {fmt} header is corrupt.", reason="corrupt", format=fmt)


def sniff_non_image(data: bytes) -> str:
    """Name what a non-image upload most likely is, for a clearer error message."""
    head = data[:1024].lstrip()
    lowered = head.lower()
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered[:256]:
        return "an HTML document"
    if lowered.startswith(b"<?xml") or lowered.startswith(b"<svg"):
        return "an XML/SVG document"
    if head.startswith((b"PK\x03\x04", b"\x1f\x8b")):
        return "an archive"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data of an unknown kind"
    return "plain text"
