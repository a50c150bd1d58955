"""Classification metrics from a confusion matrix: top-1/top-5, per-class P/R/F1, macro-F1.

Counts (not averages) are what ranks add up, so the same functions serve one process and DDP.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from app.runtime.card import Evaluation
from training.core.report import evaluation_record

# The headline numbers of ClassificationMetrics.summary(), as metrics.json and cards hold them.
SUMMARY_KEYS = ("top1", "top5", "macro_f1", "loss", "images")


@dataclass(frozen=True)
class Tally:
    """Sums over a pass through data: confusion[true, predicted], top-k hits, loss."""

    confusion: torch.Tensor
    topk_correct: int
    loss_sum: float

    @property
    def count(self) -> int:
        """Images seen."""
        return int(self.confusion.sum().item())


def update_tally(
    confusion: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, k: int
) -> int:
    """Add a batch to `confusion` in place; return how many targets are in the top k."""
    predicted = logits.argmax(dim=1)
    classes = confusion.shape[0]
    flat = targets.to(torch.int64) * classes + predicted.to(torch.int64)
    confusion += torch.bincount(flat.cpu(), minlength=classes * classes).view(classes, classes)
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return int((top == targets.view(-1, 1)).any(dim=1).sum().item())


@dataclass(frozen=True)
class ClassificationMetrics:
    """What a model scored on one split."""

    labels: tuple[str, ...]
    top1: float
    top5: float
    macro_f1: float
    loss: float
    count: int
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]

    def summary(self) -> dict[str, float]:
        """The headline numbers, as recorded in the card."""
        return {
            "top1": self.top1,
            "top5": self.top5,
            "macro_f1": self.macro_f1,
            "loss": self.loss,
            "images": float(self.count),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for metrics.json."""
        return {
            **self.summary(),
            "labels": list(self.labels),
            "per_class": self.per_class,
            "confusion": self.confusion,
        }

    def to_evaluation(self, dataset: str, split: str, source: str) -> Evaluation:
        """The card's record of this evaluation."""
        return evaluation_record(self.summary(), self.per_class, dataset, split, source)


def compute_metrics(tally: Tally, labels: Sequence[str]) -> ClassificationMetrics:
    """Metrics from summed counts; precision/recall of a class never seen or predicted are 0."""
    confusion = tally.confusion.to(torch.float64)
    true_positive = confusion.diag()
    support = confusion.sum(dim=1)
    predicted = confusion.sum(dim=0)
    precision = true_positive / predicted.clamp_min(1)
    recall = true_positive / support.clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    count = max(tally.count, 1)
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": float(support[i]),
        }
        for i, label in enumerate(labels)
    }
    return ClassificationMetrics(
        labels=tuple(labels),
        top1=float(true_positive.sum() / count),
        top5=tally.topk_correct / count,
        macro_f1=float(f1.mean()),
        loss=tally.loss_sum / count,
        count=tally.count,
        per_class=per_class,
        confusion=tally.confusion.to(torch.int64).tolist(),
    )


def format_metrics(metrics: ClassificationMetrics, title: str) -> str:
    """A table for the terminal: headline numbers, then one row per class."""
    width = max(len(label) for label in metrics.labels)
    lines = [
        f"{title}: top-1 {metrics.top1:.2%}  top-5 {metrics.top5:.2%}  "
        f"macro-F1 {metrics.macro_f1:.4f}  loss {metrics.loss:.4f}  ({metrics.count} images)",
        f"  {'class':<{width}}  precision  recall      f1  support",
    ]
    for label, row in metrics.per_class.items():
        lines.append(
            f"  {label:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
            f"{row['f1']:6.4f}  {int(row['support']):7d}"
        )
    return "\n".join(lines)
