"""A tiny scripted segmenter for tests: red pixels are class 1, blue ones class 2."""

from pathlib import Path

import torch
from torch import nn

from app.runtime.card import InputSpec, ModelCard, Normalization, SegmentationSpec
from training.core.export import export_model, framework_versions
from training.segmentation.publish import check_segmentation_parity

TINY_SEGMENTER = "tiny-regions"
# The square every upload is stretched to; tests use uploads this wide so 1 input pixel is
# about 1 upload pixel and a boundary can be checked to within one pixel.
SIDE = 128


class ColorSegmenter(nn.Module):
    """Logits [N, 3, H/2, W/2]: a stride like real segmenters, so serving must scale up."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = nn.functional.avg_pool2d(pixels.float(), 2)
        red = ((x[:, 0] > 150) & (x[:, 1] < 100) & (x[:, 2] < 100)).float()
        blue = ((x[:, 2] > 150) & (x[:, 0] < 100) & (x[:, 1] < 100)).float()
        background = torch.full_like(red, 0.5)
        return torch.stack([background, red, blue], dim=1) * 10.0


def tiny_segmenter_card(name: str = TINY_SEGMENTER) -> ModelCard:
    """The card of the tiny colour segmenter."""
    return ModelCard(
        name=name,
        version="0.0.1",
        task="segment",
        architecture="color-regions",
        framework=framework_versions(),
        labels=("background", "red thing", "blue thing"),
        input=InputSpec(
            resize_mode="stretch",
            resize_size=SIDE,
            normalization=Normalization(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        ),
        segmentation=SegmentationSpec(),
    )


def export_tiny_segmenter(store: Path) -> None:
    """Export it through the real exporter and the segmenter's parity check."""
    export_model(
        ColorSegmenter(),
        tiny_segmenter_card(),
        store,
        parity=check_segmentation_parity,
    )
