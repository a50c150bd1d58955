"""The segmenter's class map: the same pixels as bilinear scaling followed by argmax; masks
encoded in the batch."""

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from app.runtime.loader import load_model
from app.runtime.segmentation import MAX_LOGIT_PIXELS, SegmentInput, class_map, make_segment_runner
from tests.segmenters import TINY_SEGMENTER


def reference_class_map(logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """What `class_map` replaced: the whole image's logits scaled at once, then argmax."""
    scaled = F.interpolate(logits[None], size=(height, width), mode="bilinear", align_corners=False)
    return scaled[0].argmax(dim=0).to(torch.uint8)


@pytest.mark.parametrize(
    ("height", "width"),
    [(1, 1), (7, 300), (300, 451), (257, 129), (48, 48), (40, 20)],
)
def test_class_map_equals_bilinear_scaling_then_argmax(height: int, width: int) -> None:
    generator = torch.Generator().manual_seed(height * 1000 + width)
    logits = torch.randn((9, 48, 40), generator=generator) * 4

    fast = class_map(logits, height, width)

    assert fast.dtype == torch.uint8
    assert fast.shape == (height, width)
    # The matrix products round differently from interpolate's own kernel; only a pixel whose
    # two best classes tie within float rounding may differ.
    agreement = (fast == reference_class_map(logits, height, width)).float().mean().item()
    assert agreement > 0.9995


def test_large_images_are_scaled_to_the_pixel_cap_then_enlarged() -> None:
    # Class 1 wins in the left half of the logits and class 2 in the right half.
    logits = torch.zeros((3, 16, 16))
    logits[1, :, :8] = 5.0
    logits[2, :, 8:] = 5.0
    height, width = 1200, 1600
    assert height * width > MAX_LOGIT_PIXELS

    classes = class_map(logits, height, width)

    assert classes.shape == (height, width)
    assert set(torch.unique(classes).tolist()) == {1, 2}
    assert (classes[:, : width // 2 - 2] == 1).all()
    assert (classes[:, width // 2 + 2 :] == 2).all()


def test_each_mask_is_encoded_in_the_batch_by_its_own_input(model_store: Path) -> None:
    runner = make_segment_runner(load_model(model_store / TINY_SEGMENTER, torch.device("cpu")))
    pixels = torch.zeros((3, 64, 64), dtype=torch.uint8)
    pixels[0] = 255  # a red square: the tiny segmenter's class of red pixels everywhere
    seen: list[tuple[tuple[int, ...], int, int]] = []

    def summary(class_ids: np.ndarray, counts: np.ndarray) -> tuple[tuple[int, ...], int]:
        seen.append((class_ids.shape, int(counts.sum()), threading.get_ident()))
        return class_ids.shape, int(counts.sum())

    plain, encoded = runner(
        [SegmentInput(pixels, 30, 20), SegmentInput(pixels, 50, 40, encode_mask=summary)]
    )

    assert plain.mask is None
    assert encoded.mask == ((40, 50), 50 * 40)
    # Called once, with the image's own map and counts, on the thread that ran the batch.
    assert seen == [((40, 50), 50 * 40, threading.get_ident())]
