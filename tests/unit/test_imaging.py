"""decode_image: every mode Pillow reads, EXIF orientation, and each kind of bad input."""

import numpy as np
import pytest
from PIL import Image

from app.errors import ImageTooLarge, InvalidImage, PayloadTooLarge
from app.imaging import ImageLimits, decode_image
from tests.images import encode, oriented_jpeg, photo, png_header_only, quadrants, sixteen_bit_png

LIMITS = ImageLimits(max_bytes=5 * 1024 * 1024, max_pixels=4_000_000, min_side=8)


def rgb(data: bytes) -> np.ndarray:
    return np.asarray(decode_image(data, LIMITS).image, dtype=np.int16)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("1", "PNG"),
        ("L", "PNG"),
        ("P", "PNG"),
        ("RGB", "JPEG"),
        ("CMYK", "JPEG"),
        ("CMYK", "TIFF"),
        ("RGB", "WEBP"),
        ("RGB", "BMP"),
        ("P", "GIF"),
    ],
)
def test_every_mode_decodes_to_rgb_of_the_same_picture(mode: str, fmt: str) -> None:
    cat = photo("chelsea")
    decoded = decode_image(encode(cat.convert(mode), fmt), LIMITS)
    assert decoded.image.mode == "RGB"
    assert (decoded.width, decoded.height) == cat.size
    expected = np.asarray(cat.convert(mode).convert("RGB"), dtype=np.int16)
    assert np.abs(np.asarray(decoded.image, dtype=np.int16) - expected).mean() < 12


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    gray = np.asarray(photo("camera"))
    decoded = rgb(sixteen_bit_png(gray))
    assert np.abs(decoded[..., 0] - gray).max() <= 1
    assert (decoded[..., 0] == decoded[..., 2]).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_become_white(mode: str) -> None:
    image = Image.new("RGBA", (20, 10), (200, 0, 0, 255))
    image.paste((0, 0, 0, 0), (10, 0, 20, 10))
    pixels = rgb(encode(image.convert(mode), "PNG"))
    assert (pixels[:, 15] == 255).all()
    assert (pixels[:, 5] != 255).any()


def test_palette_transparency_becomes_white() -> None:
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    image.paste(0, (8, 0, 16, 16))
    pixels = rgb(encode(image, "PNG", transparency=0))
    assert (pixels[:, 12] == 255).all()
    assert tuple(pixels[0, 0]) == (250, 10, 10)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_before_anything_else(orientation: int) -> None:
    upright = quadrants(64, 48)
    decoded = decode_image(oriented_jpeg(upright, orientation), LIMITS)
    assert (decoded.width, decoded.height) == (64, 48)
    pixels = np.asarray(decoded.image, dtype=np.int16)
    assert pixels[5, 5, 0] > 150 > pixels[5, 5, 2]  # top-left is red
    assert pixels[5, 60, 1] > 150  # top-right is green
    assert pixels[40, 30, 2] > 150  # bottom is blue


def test_large_jpeg_is_scaled_while_decoding_but_reports_its_real_size() -> None:
    big = photo("astronaut").resize((1800, 1800))
    decoded = decode_image(encode(big, "JPEG"), LIMITS, draft_size=256)
    assert (decoded.width, decoded.height) == (1800, 1800)
    assert 256 <= decoded.image.size[0] <= 450  # libjpeg scaled by 1/4


def reason_of(data: bytes, limits: ImageLimits = LIMITS) -> str:
    with pytest.raises(InvalidImage) as caught:
        decode_image(data, limits)
    return str(caught.value.details["reason"])


def test_empty_upload() -> None:
    assert reason_of(b"") == "empty"


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"just some notes\nabout a product\n", "plain text"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "an HTML document"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj", "a PDF document"),
    ],
)
def test_non_images_named_jpg_are_named_in_the_error(payload: bytes, kind: str) -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_image(payload, LIMITS)
    assert caught.value.details == {"reason": "not_an_image", "detected": kind}
    assert kind in caught.value.message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files(fmt: str) -> None:
    data = encode(photo("coffee"), fmt)
    assert reason_of(data[: len(data) // 2]) == "truncated"


def test_one_pixel_image_is_too_small() -> None:
    assert reason_of(encode(Image.new("RGB", (1, 1)), "PNG")) == "too_small"


def test_zero_size_image() -> None:
    assert reason_of(png_header_only(0, 10)) == "zero_size"


def test_decompression_bomb_is_refused_from_the_header() -> None:
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(png_header_only(30_000, 30_000), LIMITS)  # 900 Mpx in ~100 bytes
    assert caught.value.code == "image_too_large"


def test_pixel_limit_below_pillows_own() -> None:
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(png_header_only(4000, 2000), LIMITS)
    assert caught.value.details == {"width": 4000, "height": 2000, "limit": 4_000_000}


def test_too_many_bytes() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_image(b"x" * 2048, ImageLimits(max_bytes=1024, max_pixels=100, min_side=1))
