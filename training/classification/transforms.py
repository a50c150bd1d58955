"""Train and eval presets (torchvision transforms v2), both ending in a uint8 CHW tensor.

The eval preset is not a re-typed copy of the service's preprocessing: it calls the service's
own functions with the card's InputSpec, so what a model is measured on is what it is served.
"""

from collections.abc import Iterable
from typing import Literal

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, v2

from app.imaging import to_rgb
from app.runtime.card import InputSpec
from app.runtime.preprocessing import preprocess_image

AugmentPreset = Literal["none", "small", "standard"]

_INTERPOLATION = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


class EvalPreset:
    """Decoded image -> exactly the tensor the service feeds the model for this card."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """The service decodes to RGB and then runs preprocess_image; so do we."""
        return preprocess_image(to_rgb(image), self.spec)

    def __repr__(self) -> str:
        return f"EvalPreset({self.spec.model_dump_json()})"


class TrainPreset:
    """Random augmentation that ends at the card's tensor size and colour mode.

    `small`: resize to the input size, random crop with 1/7 padding and horizontal flip (the
    CIFAR/Fashion-MNIST recipe). `standard`: random resized crop and flip (torchvision's ImageNet
    recipe). `none`: the eval preset. Random erasing is optional on top of any of them.
    """

    def __init__(
        self, spec: InputSpec, augment: AugmentPreset, random_erasing: float = 0.0
    ) -> None:
        self.spec = spec
        self.eval = EvalPreset(spec)
        self.augment = augment
        self.geometry = _geometry(spec, augment)
        tail: list[v2.Transform] = [v2.PILToTensor()]
        if random_erasing > 0:
            tail.append(v2.RandomErasing(p=random_erasing, value=0))
        self.tail = v2.Compose(tail)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """A random view of the image as a uint8 CHW tensor."""
        if self.augment == "none":
            pixels = self.eval(image)
            return pixels if len(self.tail.transforms) == 1 else self.tail(pixels)
        image = to_rgb(image).convert(self.spec.color_mode)
        result: torch.Tensor = self.tail(self.geometry(image))
        return result

    def __repr__(self) -> str:
        return f"TrainPreset({self.augment}, {self.geometry}, {self.tail})"


def _geometry(spec: InputSpec, augment: AugmentPreset) -> v2.Transform:
    height, width = spec.tensor_size
    interpolation = _INTERPOLATION[spec.interpolation]
    if augment == "small":
        return v2.Compose(
            [
                v2.Resize((height, width), interpolation=interpolation, antialias=True),
                v2.RandomCrop((height, width), padding=max(1, height // 7)),
                v2.RandomHorizontalFlip(),
            ]
        )
    if augment == "standard":
        return v2.Compose(
            [
                v2.RandomResizedCrop((height, width), interpolation=interpolation, antialias=True),
                v2.RandomHorizontalFlip(),
            ]
        )
    return v2.Identity()


def choose_augment(requested: str, image_side: int) -> AugmentPreset:
    """`auto`: the small-image recipe below 64 px, torchvision's above."""
    if requested == "auto":
        return "small" if image_side < 64 else "standard"
    presets: dict[str, AugmentPreset] = {"none": "none", "small": "small", "standard": "standard"}
    if requested not in presets:
        raise ValueError(f"unknown augmentation preset {requested!r}")
    return presets[requested]


def channel_statistics(
    images: Iterable[torch.Tensor],
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 CHW images, on the 0-1 scale the card records."""
    total = squares = count = None
    for image in images:
        pixels = image.double().flatten(1) / 255.0
        total = pixels.sum(1) if total is None else total + pixels.sum(1)
        squares = (pixels**2).sum(1) if squares is None else squares + (pixels**2).sum(1)
        count = pixels.shape[1] if count is None else count + pixels.shape[1]
    if total is None or squares is None or count is None:
        raise ValueError("no images to measure")
    mean = total / count
    std = (squares / count - mean**2).clamp_min(1e-12).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())
