"""COCO box metrics through faster-coco-eval: mAP@[.5:.95], mAP@.5, per-class AP, PR curves."""

import copy
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from app.runtime.card import Evaluation
from training.core.report import evaluation_record

logger = logging.getLogger(__name__)

# COCO's 101 recall points, at which precision is interpolated.
RECALL_POINTS = tuple(float(r) for r in np.linspace(0.0, 1.0, 101))


@dataclass(frozen=True, kw_only=True)
class DetectionMetrics:
    """What a detector scored on one split (COCO protocol, up to 100 detections per image)."""

    map: float
    map50: float
    map75: float
    map_small: float
    map_medium: float
    map_large: float
    recall100: float
    images: int
    objects: int
    per_class: dict[str, dict[str, float]]  # AP, AP50, objects
    pr_curves: dict[str, list[float]]  # class -> precision at RECALL_POINTS, IoU 0.5

    def summary(self) -> dict[str, float]:
        """The headline numbers, as recorded in the card."""
        return {
            "map": self.map,
            "map50": self.map50,
            "map75": self.map75,
            "map_small": self.map_small,
            "map_medium": self.map_medium,
            "map_large": self.map_large,
            "recall100": self.recall100,
            "images": float(self.images),
            "objects": float(self.objects),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for metrics.json."""
        return {**self.summary(), "per_class": self.per_class}

    def to_evaluation(self, dataset: str, split: str, source: str) -> Evaluation:
        """The card's record of this evaluation."""
        return evaluation_record(self.summary(), self.per_class, dataset, split, source)


def coco_metrics(
    ground_truth: dict[str, Any], detections: list[dict[str, Any]], labels: tuple[str, ...]
) -> DetectionMetrics:
    """Score COCO-format `detections` (bbox xywh, score, category_id) against `ground_truth`.

    `labels[k]` names category k of the ground truth's sorted categories (labels[0] is the
    background); detections use the ground truth's own category ids.
    """
    truth = {key: ground_truth[key] for key in ("images", "annotations", "categories")}
    coco_truth = COCO(copy.deepcopy(truth))
    coco_found = coco_truth.loadRes(copy.deepcopy(detections)) if detections else COCO()
    evaluator = COCOeval_faster(coco_truth, coco_found, "bbox", print_function=logger.debug)
    if not detections:
        return _empty(truth, labels)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    stats = [max(float(s), 0.0) for s in evaluator.stats]
    precision = np.asarray(evaluator.eval["precision"])  # [IoU, recall, class, area, maxDets]
    category_ids = sorted(c["id"] for c in truth["categories"])
    per_class, curves = {}, {}
    counts = _objects_per_category(truth)
    for k, category in enumerate(category_ids):
        name = labels[k + 1]
        table = precision[:, :, k, 0, -1]
        per_class[name] = {
            "ap": _mean_valid(table),
            "ap50": _mean_valid(table[0]),
            "objects": float(counts.get(category, 0)),
        }
        curves[name] = [max(float(p), 0.0) for p in table[0]]
    return DetectionMetrics(
        map=stats[0],
        map50=stats[1],
        map75=stats[2],
        map_small=stats[3],
        map_medium=stats[4],
        map_large=stats[5],
        recall100=stats[8],
        images=len(truth["images"]),
        objects=sum(counts.values()),
        per_class=per_class,
        pr_curves=curves,
    )


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else 0.0


def _objects_per_category(truth: dict[str, Any]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for annotation in truth["annotations"]:
        if not annotation.get("iscrowd", 0):
            counts[annotation["category_id"]] = counts.get(annotation["category_id"], 0) + 1
    return counts


def _empty(truth: dict[str, Any], labels: tuple[str, ...]) -> DetectionMetrics:
    counts = _objects_per_category(truth)
    category_ids = sorted(c["id"] for c in truth["categories"])
    per_class = {
        labels[k + 1]: {"ap": 0.0, "ap50": 0.0, "objects": float(counts.get(c, 0))}
        for k, c in enumerate(category_ids)
    }
    curves = {name: [0.0] * len(RECALL_POINTS) for name in per_class}
    return DetectionMetrics(
        map=0.0,
        map50=0.0,
        map75=0.0,
        map_small=0.0,
        map_medium=0.0,
        map_large=0.0,
        recall100=0.0,
        images=len(truth["images"]),
        objects=sum(counts.values()),
        per_class=per_class,
        pr_curves=curves,
    )


def format_detection_metrics(metrics: DetectionMetrics, title: str) -> str:
    """A table for the terminal: headline numbers, then one row per class."""
    width = max([len(label) for label in metrics.per_class] + [5])
    lines = [
        f"{title}: mAP@[.5:.95] {metrics.map:.4f}  mAP@.5 {metrics.map50:.4f}  "
        f"mAP@.75 {metrics.map75:.4f}  AR@100 {metrics.recall100:.4f}  "
        f"({metrics.images} images, {metrics.objects} objects)",
        f"  {'class':<{width}}      AP    AP50  objects",
    ]
    for label, row in metrics.per_class.items():
        lines.append(
            f"  {label:<{width}}  {row['ap']:.4f}  {row['ap50']:.4f}  {int(row['objects']):7d}"
        )
    return "\n".join(lines)
