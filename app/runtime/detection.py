"""Batched detector calls: images of different sizes in, labelled boxes in original pixels out."""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from app.runtime.inference import forward_precision, make_device_transfer
from app.runtime.loader import LoadedModel

BACKGROUND_CLASS_ID = 0


@dataclass(frozen=True, slots=True)
class DetectInput:
    """A preprocessed image (uint8 CHW), the upright size of its upload, and the caller's limits."""

    pixels: torch.Tensor
    width: int
    height: int
    score_threshold: float
    max_detections: int


@dataclass(frozen=True, slots=True)
class DetectedObject:
    """One box in the pixel coordinates of the original upload (xyxy)."""

    class_id: int
    score: float
    box: tuple[float, float, float, float]


DetectRunner = Callable[[list[DetectInput]], list[list[DetectedObject]]]


def make_detect_runner(model: LoadedModel) -> DetectRunner:
    """A batch function: one call on the list of images, then filter and rescale per image."""
    to_device = make_device_transfer(model.device)

    def run(items: list[DetectInput]) -> list[list[DetectedObject]]:
        images = [to_device(item.pixels) for item in items]
        with torch.inference_mode(), forward_precision(model):
            outputs = model.module(images)
        if len(outputs) != len(items):
            raise RuntimeError(
                f"detector {model.card.name!r} returned {len(outputs)} results for {len(items)}"
            )
        return [_objects(output, item) for output, item in zip(outputs, items, strict=True)]

    return run


def _objects(output: dict[str, torch.Tensor], item: DetectInput) -> list[DetectedObject]:
    scores = output["scores"].float().cpu()
    labels = output["labels"].cpu()
    keep = (scores >= item.score_threshold) & (labels != BACKGROUND_CLASS_ID)
    order = scores[keep].argsort(descending=True)[: item.max_detections]
    input_height, input_width = item.pixels.shape[-2:]
    # Boxes come back in the coordinates of the tensor the model got; map them to the upload.
    scale = torch.tensor(
        [item.width / input_width, item.height / input_height] * 2, dtype=torch.float64
    )
    boxes = output["boxes"].cpu().double()[keep][order] * scale
    limits = torch.tensor([item.width, item.height] * 2, dtype=torch.float64)
    boxes = torch.minimum(boxes.clamp(min=0), limits)
    return [
        DetectedObject(int(class_id), float(score), (x_min, y_min, x_max, y_max))
        for class_id, score, (x_min, y_min, x_max, y_max) in zip(
            labels[keep][order].tolist(), scores[keep][order].tolist(), boxes.tolist(), strict=True
        )
    ]


def detect_warm_up_batch(channels: int, side: int, size: int) -> list[DetectInput]:
    """`size` blank images at the detector's largest input size."""
    pixels = torch.zeros((channels, side, side), dtype=torch.uint8)
    return [DetectInput(pixels, side, side, 1.0, 1)] * size
