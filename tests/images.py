"""Image builders for tests: real photos from scikit-image, and precisely broken files."""

import io
import struct
import zlib

import numpy as np
from PIL import Image
from skimage import data

# Pillow's exif_transpose applies these; each is its own inverse except the two rotations.
_UNDO_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)


def photo(name: str) -> Image.Image:
    """A real photograph bundled with scikit-image (chelsea, coffee, astronaut, ...)."""
    return Image.fromarray(getattr(data, name)())


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    """The bytes of `image` saved in `fmt`."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def solid(color: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> bytes:
    """A PNG of one colour."""
    return encode(Image.new("RGB", size, color), "PNG")


def quadrants(width: int = 64, height: int = 48) -> Image.Image:
    """Upright test card: top-left red, top-right green, bottom half blue."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height // 2))
    image.paste(GREEN, (width // 2, 0, width, height // 2))
    return image


def oriented_jpeg(upright: Image.Image, orientation: int) -> bytes:
    """A JPEG whose pixels are stored so that EXIF `orientation` makes them `upright` again."""
    stored = upright.transpose(_UNDO_ORIENTATION[orientation]) if orientation != 1 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares `width` x `height` pixels (a decompression-bomb header)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def sixteen_bit_png(gray: np.ndarray) -> bytes:
    """A 16-bit greyscale PNG (mode I;16) holding `gray` (uint8) scaled to the 16-bit range."""
    wide = gray.astype(np.uint16) * 257
    image = Image.fromarray(wide)
    assert image.mode == "I;16"
    return encode(image, "PNG")
