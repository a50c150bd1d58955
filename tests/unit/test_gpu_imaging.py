"""The GPU JPEG path's decisions, run on the CPU: torchvision decodes a list on either device,
so everything but nvJPEG itself (tests/api/test_gpu.py) is tested here."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from app.errors import InvalidImage
from app.gpu_imaging import GpuJpegDecoder, apply_orientation, decodable_header, gpu_decoder_for
from app.imaging import ImageLimits, decode_image
from app.runtime.card import InputSpec
from app.runtime.device import DeviceUnavailable
from app.runtime.preprocessing import draft_size, preprocess_image
from app.services.uploads import ImagePreparer, PreparedImage, Upload
from tests.images import encode, oriented_jpeg, photo, quadrants, solid

LIMITS = ImageLimits(max_bytes=2 * 1024 * 1024, max_pixels=4_000_000, min_side=8)
SPEC = InputSpec(resize_size=64, crop_size=56)
CPU = torch.device("cpu")
# Mean |difference| in grey levels between the two paths' model inputs: libjpeg's draft
# scaling and Pillow's resize against a full decode and torchvision's tensor resize (measured
# 3.6 for a 512 px photo to 64 px, the largest reduction here).
MEAN_LEVELS = 4.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow(orientation: int) -> None:
    stored = Image.fromarray(
        np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), "uint8")
    )
    exif = stored.getexif()
    exif[0x0112] = orientation
    stored.info["exif"] = exif.tobytes()
    expected = torch.from_numpy(np.array(ImageOps.exif_transpose(stored))).permute(2, 0, 1)
    pixels = torch.from_numpy(np.array(stored)).permute(2, 0, 1)
    assert torch.equal(apply_orientation(pixels, orientation), expected)


def test_only_plain_complete_jpegs_within_limits_go_to_the_gpu() -> None:
    jpeg = encode(photo("chelsea"), "JPEG")
    assert decodable_header(jpeg, LIMITS) is not None
    assert decodable_header(encode(photo("chelsea").convert("L"), "JPEG"), LIMITS) is not None
    assert decodable_header(solid((1, 2, 3)), LIMITS) is None  # PNG
    assert decodable_header(encode(photo("chelsea").convert("CMYK"), "JPEG"), LIMITS) is None
    assert decodable_header(jpeg[: len(jpeg) // 2], LIMITS) is None  # truncated
    assert decodable_header(b"not an image", LIMITS) is None
    small = ImageLimits(max_bytes=LIMITS.max_bytes, max_pixels=1000, min_side=8)
    assert decodable_header(jpeg, small) is None  # over the pixel limit: never decoded here


def test_the_setting_needs_cuda_for_on_only() -> None:
    assert gpu_decoder_for("off", torch.device("cuda"), LIMITS) is None
    assert gpu_decoder_for("auto", CPU, LIMITS) is None
    with pytest.raises(DeviceUnavailable, match="VISION_GPU_DECODE=on"):
        gpu_decoder_for("on", CPU, LIMITS)


def test_tensor_preprocessing_matches_the_cpu_path() -> None:
    data = encode(photo("astronaut"), "JPEG", quality=95)
    decoded = decode_image(data, LIMITS, draft_size(SPEC))
    expected = preprocess_image(decoded.image, SPEC)
    (image,) = GpuJpegDecoder(LIMITS, CPU).prepare_many([data], SPEC)
    assert image is not None and image.pixels.shape == expected.shape
    assert (image.width, image.height) == (decoded.width, decoded.height)
    assert (image.pixels.float() - expected.float()).abs().mean() <= MEAN_LEVELS


def test_preparer_mixes_paths_and_keeps_the_cpu_errors() -> None:
    corrupt = bytearray(encode(photo("coffee"), "JPEG"))
    corrupt[600:4000] = b"\x00" * 3400  # garbage inside the scan: the header is intact
    uploads = [
        Upload("upright.jpg", oriented_jpeg(quadrants(64, 48), 6)),
        Upload("flat.png", solid((220, 20, 20))),
        Upload("corrupt.jpg", bytes(corrupt)),
        Upload("photo.jpg", encode(photo("chelsea"), "JPEG")),
    ]
    with ThreadPoolExecutor(2) as pool:
        plain = ImagePreparer(LIMITS, pool)
        with_gpu = ImagePreparer(LIMITS, pool, GpuJpegDecoder(LIMITS, CPU))
        expected = asyncio.run(plain.prepare_all(uploads, SPEC))
        actual = asyncio.run(with_gpu.prepare_all(uploads, SPEC))
    for want, got in zip(expected, actual, strict=True):
        if isinstance(want, PreparedImage):
            assert isinstance(got, PreparedImage)
            assert (got.width, got.height, got.sha256) == (want.width, want.height, want.sha256)
            assert (got.pixels.float() - want.pixels.float()).abs().mean() <= MEAN_LEVELS
        else:
            assert isinstance(want, InvalidImage) and isinstance(got, InvalidImage)
            assert got.to_body() == want.to_body()


def test_a_bad_file_in_a_batch_is_found_and_left_to_the_cpu() -> None:
    good = encode(photo("chelsea"), "JPEG")
    bad = good[:200] + b"\x00" * 100 + good[300:]
    results = GpuJpegDecoder(LIMITS, CPU).prepare_many([good, bad, good], SPEC)
    assert results[0] is not None and results[2] is not None
    if results[1] is not None:  # libjpeg may decode damaged data with a warning, as Pillow does
        assert results[1].pixels.shape == results[0].pixels.shape
