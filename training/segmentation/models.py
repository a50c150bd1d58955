"""Segmenter factory: an LR-ASPP head on the ImageNet MobileNetV2 backbone, uint8 in, logits out.

The exported module takes what the service sends (uint8 NCHW, the card's square input) and
returns class logits [N, C, H/8, W/8] covering the whole input; serving scales them to each
upload's upright size (app/runtime/segmentation.py), training to the label's size.
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2
from torchvision.models.segmentation.lraspp import LRASPPHead
from torchvision.ops import misc as misc_ops

from training.core.config import ConfigError
from training.core.weights import IMAGENET_MEAN, IMAGENET_STD

SEGMENTER_ARCHS = ("lraspp_mobilenet_v2",)
# MobileNetV2 `features`: blocks 0-6 end at stride 8 with 32 channels (the LR-ASPP "low"
# branch); the rest ends at stride 32 with 1280 (the "high" branch). No dilation: on a CPU
# the stride-32 context is what keeps the backbone at classifier cost.
_LOW_END = 7
_LOW_CHANNELS = 32
_HIGH_CHANNELS = 1280
_BLOCKS = 19


@dataclass(frozen=True, kw_only=True)
class SegmenterConfig:
    """What shapes a segmenter: classes (background included) and the head and training depth."""

    arch: str
    num_classes: int
    head_channels: int = 128
    trainable_layers: int = 19  # MobileNetV2 blocks trained, counted from the top (1..19)


class Segmenter(nn.Module):
    """uint8 NCHW images -> class logits at stride 8; normalisation happens inside."""

    mean: Tensor
    std: Tensor

    def __init__(self, config: SegmenterConfig, weights: str = "imagenet") -> None:
        super().__init__()
        if config.arch not in SEGMENTER_ARCHS:
            raise ConfigError(f"--arch for segmentation is one of {SEGMENTER_ARCHS}")
        if weights not in ("imagenet", "none"):
            raise ConfigError(f"--weights for a segmenter is imagenet or none, not {weights!r}")
        if not 1 <= config.trainable_layers <= _BLOCKS:
            raise ConfigError(f"trainable_layers is 1..{_BLOCKS}")
        pretrained = MobileNet_V2_Weights.IMAGENET1K_V1 if weights == "imagenet" else None
        # Frozen batch norm: CPU batches of 8 estimate statistics worse than ImageNet's.
        features = mobilenet_v2(weights=pretrained, norm_layer=misc_ops.FrozenBatchNorm2d).features
        for index, block in enumerate(features):
            block.requires_grad_(index >= _BLOCKS - config.trainable_layers)
        self.low = features[:_LOW_END]
        self.high = features[_LOW_END:]
        self.head = LRASPPHead(
            _LOW_CHANNELS, _HIGH_CHANNELS, config.num_classes, config.head_channels
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0)

    def forward(self, pixels: Tensor) -> Tensor:
        """Logits [N, C, ceil(H/8), ceil(W/8)] for uint8 images [N, 3, H, W]."""
        x = (pixels.float() - self.mean) / self.std
        low = self.low(x)
        high = self.high(low)
        logits: Tensor = self.head({"low": low, "high": high})
        return logits


def upsample_logits(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Logits scaled to `size` (height, width): the same rule serving applies to uploads."""
    return nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)
