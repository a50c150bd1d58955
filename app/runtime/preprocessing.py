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
    if spec.resize_mode == "shorter_side":
        size = [spec.resize_size]
    else:
        size = [spec.resize_size, spec.resize_size]
    image = F.resize(image, size, interpolation=interpolation, antialias=True)
    if spec.crop_size is not None:
        image = F.center_crop(image, [spec.crop_size, spec.crop_size])
    pixels: torch.Tensor = F.pil_to_tensor(image)
    return pixels


def draft_size(spec: InputSpec) -> int:
    """The smallest side a JPEG may be scaled to while decoding without losing model detail."""
    return spec.resize_size
