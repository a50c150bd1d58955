"""Property: whatever bytes arrive, decoding answers with an image or one of our errors."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import ServiceError
from app.imaging import ImageLimits, decode_image
from tests.images import encode, oriented_jpeg, photo, quadrants

LIMITS = ImageLimits(max_bytes=1024 * 1024, max_pixels=2_000_000, min_side=8)
SEEDS = {
    "jpeg": encode(photo("coffee").resize((96, 64)), "JPEG"),
    "png": encode(photo("chelsea").resize((90, 60)), "PNG"),
    "gif": encode(photo("astronaut").resize((64, 64)).convert("P"), "GIF"),
    "webp": encode(photo("rocket").resize((64, 48)), "WEBP"),
    "exif-jpeg": oriented_jpeg(quadrants(64, 48), 6),
    "tiff": encode(photo("coffee").resize((48, 32)).convert("CMYK"), "TIFF"),
}


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut]) if draw(st.booleans()) else bytes(data)


@pytest.mark.filterwarnings("ignore")  # Pillow warns about some corrupt chunks; we judge results
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_images_never_escape_as_unexpected_errors(data: bytes) -> None:
    try:
        decoded = decode_image(data, LIMITS, draft_size=32)
    except ServiceError as error:
        assert 400 <= error.status_code < 500
        assert error.details
        return
    assert decoded.image.mode == "RGB"
    assert decoded.width >= 8 and decoded.height >= 8
