"""Decoded image -> the uint8 tensor a model's card asks for (shared by serving and evaluation)."""

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from app.runtime.card import InputSpec

_INTERPOLATION = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


def preprocess_image(image: Image.Image, spec: InputSpec) -> torch.Tensor:
    """Resize, crop and convert an RGB image to a CHW uint8 tensor as `spec` describes."""
    if spec.color_mode != image.mode:
        image = image.convert(spec.color_mode)
    interpolation = _INTERPOLATION[spec.interpolation]
    size = _target_size(image.size, spec)
    if size is not None:
        image = F.resize(image, size, interpolation=interpolation, antialias=True)
    if spec.crop_size is not None:
        image = F.center_crop(image, [spec.crop_size, spec.crop_size])
    pixels: torch.Tensor = F.pil_to_tensor(image)
    return pixels


def _target_size(size: tuple[int, int], spec: InputSpec) -> list[int] | None:
    """torchvision's `size` argument for the resize, or None when no resize is needed."""
    if spec.resize_mode == "shorter_side":
        return [spec.resize_size]
    if spec.resize_mode == "stretch":
        return [spec.resize_size, spec.resize_size]
    width, height = size
    scale = spec.resize_size / max(width, height)
    if scale >= 1:
        return None
    return [max(1, round(height * scale)), max(1, round(width * scale))]


def draft_size(spec: InputSpec) -> int:
    """The smallest side a JPEG may be scaled to while decoding without losing model detail."""
    return spec.resize_size
