"""JPEG uploads decoded on the GPU (nvJPEG, one batched call) into model-ready tensors.

Only the pixel decoding and the resize/crop move: each upload's header is opened and bounded by
`imaging.read_header` first (byte count, pixel count, sides; no GPU memory for a decompression
bomb), its EXIF orientation is read there and applied to the tensor, and the card's resize and
crop run through `preprocessing.preprocess_tensor`, the CPU path's own functions on a tensor.
Whatever this module does not take (not a plain RGB or greyscale JPEG, no end-of-image marker,
a decoding error) comes back as None and goes through the CPU path, which then gives the upload
exactly the answer or the error it gives without a GPU: one bad file in a batched nvJPEG call
fails the whole call, so a failed batch is decoded again image by image to find it.
"""

import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from app.errors import ServiceError
from app.imaging import ImageLimits, exif_orientation, read_header, upright_size
from app.runtime.card import InputSpec
from app.runtime.device import DeviceUnavailable
from app.runtime.preprocessing import preprocess_tensor

logger = logging.getLogger(__name__)

# Pillow's modes of a JPEG that nvJPEG decodes to what Pillow decodes (CMYK and YCCK are left
# to Pillow, which inverts Adobe CMYK the way photo software does).
_GPU_MODES = frozenset({"RGB", "L"})
_READ_MODES = {"RGB": ImageReadMode.RGB, "L": ImageReadMode.GRAY}
_END_OF_IMAGE = b"\xff\xd9"


@dataclass(frozen=True, kw_only=True, slots=True)
class GpuImage:
    """A preprocessed CHW uint8 tensor on the GPU and the upright size of its upload."""

    pixels: torch.Tensor
    width: int
    height: int


class GpuJpegDecoder:
    """Decodes the JPEGs among uploads on one CUDA device; the rest are the CPU path's."""

    def __init__(self, limits: ImageLimits, device: torch.device) -> None:
        self.limits = limits
        self.device = device
        self._lock = threading.Lock()  # one batched nvJPEG call at a time: bounded GPU memory

    def prepare_many(self, uploads: list[bytes], spec: InputSpec) -> list[GpuImage | None]:
        """Per upload, in order: its tensor, or None for the CPU path to take it."""
        headers = [decodable_header(data, self.limits) for data in uploads]
        taken = [index for index, header in enumerate(headers) if header is not None]
        decoded = self._decode([uploads[index] for index in taken], spec)
        results: list[GpuImage | None] = [None] * len(uploads)
        for index, pixels in zip(taken, decoded, strict=True):
            header = headers[index]
            # A size other than the header's: leave it to the decoder the service answers with.
            if pixels is not None and header is not None and _same_size(header, pixels):
                results[index] = self._prepare(header, pixels, spec)
        return results

    def _decode(self, uploads: list[bytes], spec: InputSpec) -> list[torch.Tensor | None]:
        if not uploads:
            return []
        mode = _READ_MODES[spec.color_mode]
        encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in uploads]
        with self._lock:
            try:
                return list(_decode_jpegs(encoded, mode, self.device))
            except RuntimeError:
                if len(encoded) == 1:
                    return [None]
            # One bad file fails the batched call; find it by decoding one at a time.
            return [self._decode_one(data, mode) for data in encoded]

    def _decode_one(self, data: torch.Tensor, mode: ImageReadMode) -> torch.Tensor | None:
        try:
            return _decode_jpegs([data], mode, self.device)[0]
        except RuntimeError as error:
            logger.debug("nvJPEG refused an upload, the CPU decodes it: %s", error)
            return None

    def _prepare(self, header: Image.Image, pixels: torch.Tensor, spec: InputSpec) -> GpuImage:
        width, height = upright_size(header)
        oriented = apply_orientation(pixels, exif_orientation(header))
        return GpuImage(pixels=preprocess_tensor(oriented, spec), width=width, height=height)


def decodable_header(data: bytes, limits: ImageLimits) -> Image.Image | None:
    """The opened, bounded header of a JPEG the GPU decodes as Pillow would, else None."""
    try:
        image = read_header(data, limits)
    except ServiceError:
        return None  # the CPU path raises the same error with its own wording
    if image.format != "JPEG" or image.mode not in _GPU_MODES:
        return None
    # Pillow refuses a truncated JPEG; nvJPEG may fill in the missing rows instead.
    if _END_OF_IMAGE not in data[-64:]:
        return None
    return image


def apply_orientation(pixels: torch.Tensor, orientation: int) -> torch.Tensor:
    """A CHW tensor turned upright as `PIL.ImageOps.exif_transpose` turns an image (tag 1-8)."""
    upright = _UPRIGHT.get(orientation)
    return pixels if upright is None else upright(pixels)


# PIL's transpose for each tag (FLIP_LEFT_RIGHT, ROTATE_180, FLIP_TOP_BOTTOM, TRANSPOSE,
# ROTATE_270, TRANSVERSE, ROTATE_90; its rotations are counter-clockwise) on [C, H, W].
_UPRIGHT: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    2: lambda pixels: pixels.flip(2),
    3: lambda pixels: pixels.flip((1, 2)),
    4: lambda pixels: pixels.flip(1),
    5: lambda pixels: pixels.transpose(1, 2),
    6: lambda pixels: pixels.rot90(-1, (1, 2)),
    7: lambda pixels: pixels.transpose(1, 2).flip((1, 2)),
    8: lambda pixels: pixels.rot90(1, (1, 2)),
}


def _same_size(header: Image.Image, pixels: torch.Tensor) -> bool:
    width, height = header.size
    return tuple(pixels.shape[-2:]) == (height, width)


def gpu_decoder_for(
    setting: str, device: torch.device, limits: ImageLimits
) -> GpuJpegDecoder | None:
    """`VISION_GPU_DECODE`: off; auto (on when the device is CUDA); on (CUDA or an error)."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    if device.type != "cuda":
        raise DeviceUnavailable(f"VISION_GPU_DECODE=on needs a CUDA device, not {device}")
    logger.info("JPEG uploads are decoded on %s (nvJPEG)", device)
    return GpuJpegDecoder(limits, device)


def _decode_jpegs(
    encoded: list[torch.Tensor], mode: ImageReadMode, device: torch.device
) -> list[torch.Tensor]:
    with warnings.catch_warnings():
        # torchvision 0.29 marks its decoders deprecated in favour of TorchCodec, whose JPEG
        # decoding is not yet a release we lock; this call is the one place to change.
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = decode_jpeg(encoded, mode=mode, device=device)
    return list(decoded) if isinstance(decoded, list) else [decoded]
