"""Batched classifier calls: the functions the batcher's worker threads run."""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from app.runtime.loader import LoadedModel


@dataclass(frozen=True, slots=True)
class ClassifyInput:
    """One preprocessed image (CHW uint8) and how many classes the caller wants back."""

    pixels: torch.Tensor
    top_k: int


RankedClasses = list[tuple[int, float]]


def make_classify_runner(
    model: LoadedModel,
) -> Callable[[list[ClassifyInput]], list[RankedClasses]]:
    """A batch function: stack, one forward pass, softmax, top-k per item."""
    num_labels = len(model.card.labels)
    to_device = make_device_transfer(model.device)

    def run(items: list[ClassifyInput]) -> list[RankedClasses]:
        batch = to_device(torch.stack([item.pixels for item in items]))
        with torch.inference_mode():
            logits = model.module(batch)
            if logits.shape != (len(items), num_labels):
                raise RuntimeError(
                    f"model {model.card.name!r} returned {tuple(logits.shape)} for "
                    f"{len(items)} images; expected ({len(items)}, {num_labels})"
                )
            k = min(max(item.top_k for item in items), num_labels)
            scores, class_ids = logits.float().softmax(dim=1).topk(k, dim=1)
        score_rows, id_rows = scores.cpu().tolist(), class_ids.cpu().tolist()
        return [
            list(zip(ids[: item.top_k], row[: item.top_k], strict=True))
            for item, ids, row in zip(items, id_rows, score_rows, strict=True)
        ]

    return run


def make_device_transfer(device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """CPU: identity. CUDA: pinned host memory and a non-blocking copy."""
    if device.type != "cuda":
        return lambda batch: batch
    return lambda batch: batch.pin_memory().to(device, non_blocking=True)


def classify_warm_up_batch(
    channels: int, height: int, width: int, size: int
) -> list[ClassifyInput]:
    """`size` blank images shaped as the classifier's input."""
    pixels = torch.zeros((channels, height, width), dtype=torch.uint8)
    return [ClassifyInput(pixels, 1)] * size
