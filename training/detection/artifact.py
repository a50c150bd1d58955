"""Score an exported detector folder exactly as the service runs it.

The archive is loaded by the service's loader (hash and card verified); each image goes from
file bytes through `decode_image` and `preprocess_image`, and the boxes the model returns (in
the coordinates of the tensor it got) are scaled back to the original image's pixels.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from app.runtime.loader import LoadedModel, load_model
from training.core.datacheck import DatasetError
from training.detection.data import ServedImages, collate, resolve_source
from training.detection.datacheck import checked_split
from training.detection.engine import predict
from training.detection.metrics import DetectionMetrics, coco_metrics


@dataclass(frozen=True, kw_only=True)
class DetectorEvaluation:
    """An exported detector's metrics on one split, and its raw detections."""

    model: LoadedModel
    split: str
    metrics: DetectionMetrics
    detections: list[dict[str, Any]]


def evaluate_detector(
    model_dir: Path,
    source: str,
    split: str = "test",
    *,
    batch_size: int = 8,
    workers: int = 2,
    progress: bool = True,
) -> DetectorEvaluation:
    """Load `model_dir` like the service and compute COCO mAP on `source`'s `split`."""
    loaded = load_model(model_dir, torch.device("cpu"))
    card = loaded.card
    if card.task != "detect":
        raise ValueError(f"{model_dir} is a {card.task} model, not a detector")
    root = resolve_source(source, workers=max(1, workers))
    data = checked_split(root, split, max(1, workers))  # a corrupt image must not stop it
    by_name = {name: k for k, name in enumerate(card.labels)}
    unknown = sorted(set(data.labels[1:]) - set(by_name))
    if unknown:
        raise DatasetError(f"classes {unknown} are not among the model's labels")
    # Model label k -> the data's category id (0 for labels the data does not have).
    category_of = {data.labels[k]: c for c, k in data.category_to_label.items()}
    label_to_category = [category_of.get(name, 0) for name in card.labels]
    loader = DataLoader(
        ServedImages(data, card.input), batch_size, num_workers=workers, collate_fn=collate
    )
    detections = predict(
        loaded.module,
        loader,
        label_to_category,
        device=torch.device("cpu"),
        progress=progress,
        description="evaluate",
    )
    detections = [d for d in detections if d["category_id"] != 0]
    metrics = coco_metrics(data.coco, detections, data.labels)
    return DetectorEvaluation(model=loaded, split=split, metrics=metrics, detections=detections)
