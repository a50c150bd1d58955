"""Evaluate an exported model folder exactly as the service would run it.

The archive is loaded by the service's loader (hash and card verified), each image goes through
the service's decoder and preprocessing as uploaded bytes, and the TorchScript module scores it.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from app.imaging import decode_image
from app.runtime.card import ModelCard
from app.runtime.loader import LoadedModel, load_model
from app.runtime.preprocessing import draft_size, preprocess_image
from training.data import LabeledImages, load_split
from training.datacheck import TRAINING_LIMITS, DatasetError
from training.metrics import ClassificationMetrics, Tally, compute_metrics, update_tally

logger = logging.getLogger(__name__)


class UploadedImages(Dataset[tuple[torch.Tensor, int]]):
    """Each image as the service sees it: encoded bytes -> decode_image -> preprocess_image."""

    def __init__(self, images: LabeledImages, targets: list[int], card: ModelCard) -> None:
        self.images = images
        self.targets = targets
        self.spec = card.input

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        decoded = decode_image(
            self.images.read_bytes(index), TRAINING_LIMITS, draft_size(self.spec)
        )
        return preprocess_image(decoded.image, self.spec), self.targets[index]


@dataclass(frozen=True)
class ArtifactEvaluation:
    """An exported model's metrics on one split of a data source."""

    model: LoadedModel
    source: str
    split: str
    metrics: ClassificationMetrics


def evaluate_artifact(
    model_dir: Path,
    source: str,
    split: str = "test",
    *,
    batch_size: int = 256,
    workers: int = 2,
    progress: bool = True,
) -> ArtifactEvaluation:
    """Load `model_dir` like the service and score it on `source`'s `split`."""
    loaded = load_model(model_dir, torch.device("cpu"))
    card = loaded.card
    if card.task != "classify":
        raise ValueError(f"{model_dir} is a {card.task} model; evaluate handles classifiers")
    classes, images = load_split(source, split, workers)
    targets = _card_targets(classes, images.targets, card)
    loader = DataLoader(UploadedImages(images, targets, card), batch_size, num_workers=workers)
    labels = card.labels
    confusion = torch.zeros(len(labels), len(labels), dtype=torch.int64)
    topk, loss_sum = 0, 0.0
    with torch.inference_mode():
        for pixels, batch_targets in tqdm(loader, desc="evaluate", disable=not progress):
            logits = loaded.module(pixels).float()
            loss = torch.nn.functional.cross_entropy(logits, batch_targets, reduction="sum")
            loss_sum += loss.item()
            topk += update_tally(confusion, logits, batch_targets, k=5)
    metrics = compute_metrics(Tally(confusion, topk, loss_sum), labels)
    return ArtifactEvaluation(loaded, source, split, metrics)


def _card_targets(classes: tuple[str, ...], targets: list[int], card: ModelCard) -> list[int]:
    """Map the data's class indices onto the card's, by name."""
    index = {label: i for i, label in enumerate(card.labels)}
    unknown = sorted(set(classes) - set(index))
    if unknown:
        raise DatasetError(f"classes {unknown} are not among the model's labels")
    return [index[classes[target]] for target in targets]
