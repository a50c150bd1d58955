"""Decoded image -> the uint8 tensor a model's card asks for (shared by serving and evaluation)."""

from typing import TypeVar

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from app.runtime.card import InputSpec

# torchvision's functional transforms take either, and give back what they got.
Pixels = TypeVar("Pixels", Image.Image, torch.Tensor)

_INTERPOLATION = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


def preprocess_image(image: Image.Image, spec: InputSpec) -> torch.Tensor:
    """Resize, crop and convert an RGB image to a CHW uint8 tensor as `spec` describes."""
    if spec.color_mode != image.mode:
        image = image.convert(spec.color_mode)
    pixels: torch.Tensor = F.pil_to_tensor(_resize_and_crop(image, image.size, spec))
    return pixels


def preprocess_tensor(pixels: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """The same resize and crop on a CHW uint8 tensor already in the card's colour mode (on any
    device: the GPU decoder's images stay on the GPU)."""
    height, width = pixels.shape[-2:]
    resized: torch.Tensor = _resize_and_crop(pixels, (width, height), spec)
    return resized


def _resize_and_crop(image: Pixels, size: tuple[int, int], spec: InputSpec) -> Pixels:
    """The card's resize and crop; torchvision's functions take a PIL image or a tensor alike."""
    target = _target_size(size, spec)
    if target is not None:
        interpolation = _INTERPOLATION[spec.interpolation]
        image = F.resize(image, target, interpolation=interpolation, antialias=True)
    if spec.crop_size is not None:
        image = F.center_crop(image, [spec.crop_size, spec.crop_size])
    return image


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
