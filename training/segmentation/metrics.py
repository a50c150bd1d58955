"""Segmentation metrics: per-class IoU, mIoU and pixel accuracy (torchmetrics' confusion matrix).

Scored at each image's own resolution after the service's `class_map`, so the numbers are
those of the served masks. mIoU averages the classes that occur (in truth or prediction): a
class absent from both has no IoU and is left out rather than counted as 0 or 1.
"""

from dataclasses import dataclass
from typing import Any

import torch
from torchmetrics.classification import MulticlassJaccardIndex

from training.core.distributed import all_reduce_sum
from training.segmentation.data import IGNORE_INDEX


@dataclass(frozen=True, kw_only=True)
class SegmentationMetrics:
    """One split's scores."""

    miou: float
    pixel_accuracy: float
    images: int
    pixels: int
    per_class: dict[str, dict[str, float | None]]  # label -> iou (None: absent), share

    def to_dict(self) -> dict[str, Any]:
        """JSON form (metrics.json and the card)."""
        return {
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "images": self.images,
            "pixels": self.pixels,
            "per_class": self.per_class,
        }


class SegmentationScorer:
    """Accumulates predicted and true class maps; sums across ranks when computed under DDP."""

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self._metric = MulticlassJaccardIndex(
            num_classes=len(labels), average=None, ignore_index=IGNORE_INDEX
        )
        self._images = 0

    def update(self, predicted: torch.Tensor, truth: torch.Tensor) -> None:
        """Add one image (or a batch): class ids of the same shape."""
        self._metric.update(predicted.long().flatten(), truth.long().flatten())
        self._images += 1 if predicted.ndim == 2 else int(predicted.shape[0])

    def compute(self) -> SegmentationMetrics:
        """The scores of everything added (on every rank alike)."""
        self._metric.compute()  # syncs the confusion matrix across ranks under DDP
        images = int(all_reduce_sum(torch.tensor([self._images], dtype=torch.int64)).item())
        confusion = self._metric.confmat.double()
        truth, predicted = confusion.sum(dim=1), confusion.sum(dim=0)
        hits = confusion.diagonal()
        union = truth + predicted - hits
        total = float(confusion.sum())
        per_class: dict[str, dict[str, float | None]] = {}
        ious = []
        for index, label in enumerate(self.labels):
            iou = float(hits[index] / union[index]) if union[index] > 0 else None
            if iou is not None:
                ious.append(iou)
            share = float(truth[index]) / total if total else 0.0
            per_class[label] = {"iou": iou, "pixel_share": share}
        return SegmentationMetrics(
            miou=sum(ious) / len(ious) if ious else 0.0,
            pixel_accuracy=float(hits.sum()) / total if total else 0.0,
            images=images,
            pixels=int(total),
            per_class=per_class,
        )


def format_segmentation_metrics(metrics: SegmentationMetrics, title: str) -> str:
    """A table for the log and `evaluate`."""
    lines = [
        f"{title}: mIoU {metrics.miou:.4f}, pixel accuracy {metrics.pixel_accuracy:.4f} "
        f"({metrics.images} images)",
        f"  {'class':<16} {'IoU':>7} {'pixels':>8}",
    ]
    for label, row in metrics.per_class.items():
        iou = row["iou"]
        shown = "   -   " if iou is None else f"{iou:7.4f}"
        lines.append(f"  {label:<16} {shown} {row['pixel_share'] or 0:8.2%}")
    return "\n".join(lines)
