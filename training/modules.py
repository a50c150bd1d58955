"""Scriptable wrappers that put input conversion inside the exported model."""

import torch
from torch import nn


class NormalizedClassifier(nn.Module):
    """uint8 NCHW in [0, 255] -> logits; casting and mean/std live here, so serving cannot err."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(
        self, backbone: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> None:
        super().__init__()
        self.backbone = backbone
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        # (x / 255 - mean) / std folded into one multiply-add.
        self.register_buffer("scale", 1.0 / (255.0 * std_t))
        self.register_buffer("shift", -mean_t / std_t)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Classify a batch of uint8 images."""
        pixels = images.float() * self.scale + self.shift
        logits: torch.Tensor = self.backbone(pixels)
        return logits
