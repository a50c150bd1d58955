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
from app.runtime.inference import split_outputs
from app.runtime.loader import LoadedModel, load_model
from app.runtime.preprocessing import draft_size, preprocess_image
from training.classification.heldout import evaluation_split
from training.classification.images import LabeledImages
from training.classification.metrics import (
    ClassificationMetrics,
    Tally,
    compute_metrics,
    update_tally,
)
from training.core.datacheck import TRAINING_LIMITS, DatasetError

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Outputs:
    """A model's outputs on a set of images, as the service computes them."""

    logits: torch.Tensor  # [N, C] float
    embeddings: torch.Tensor | None  # [N, D], L2-normalised; None when the model has none
    targets: torch.Tensor  # [N] class ids in the card's order; -1 for unknown images


@dataclass(frozen=True)
class ArtifactEvaluation:
    """An exported model's metrics on one split of a data source."""

    model: LoadedModel
    source: str
    split: str
    metrics: ClassificationMetrics
    outputs: Outputs


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
    loaded = load_classifier(model_dir)
    classes, images, split = evaluation_split(loaded.card, source, split, workers)
    targets = card_targets(classes, images.targets, loaded.card)
    outputs = model_outputs(
        loaded, images, targets, batch_size=batch_size, workers=workers, progress=progress
    )
    labels = loaded.card.labels
    confusion = torch.zeros(len(labels), len(labels), dtype=torch.int64)
    topk = update_tally(confusion, outputs.logits, outputs.targets, k=5)
    loss = torch.nn.functional.cross_entropy(outputs.logits, outputs.targets, reduction="sum")
    metrics = compute_metrics(Tally(confusion, topk, loss.item()), labels)
    return ArtifactEvaluation(loaded, source, split, metrics, outputs)


def load_classifier(model_dir: Path) -> LoadedModel:
    """A model folder loaded like the service loads it (hash and card checked), on the CPU."""
    loaded = load_model(model_dir, torch.device("cpu"))
    if loaded.card.task != "classify":
        raise DatasetError(f"{model_dir} is a {loaded.card.task} model; this needs a classifier")
    return loaded


def model_outputs(
    loaded: LoadedModel,
    images: LabeledImages,
    targets: list[int],
    *,
    batch_size: int = 256,
    workers: int = 2,
    progress: bool = True,
    description: str = "evaluate",
) -> Outputs:
    """Logits (and embeddings) for every image, each decoded as an uploaded file."""
    dataset = UploadedImages(images, targets, loaded.card)
    loader = DataLoader(dataset, batch_size, num_workers=workers)
    logits, embeddings, seen = [], [], []
    with torch.inference_mode():
        for pixels, batch_targets in tqdm(loader, desc=description, disable=not progress):
            batch_logits, batch_embeddings = split_outputs(
                loaded.module(pixels), loaded.card, len(pixels)
            )
            logits.append(batch_logits.float())
            seen.append(batch_targets)
            if batch_embeddings is not None:
                embeddings.append(batch_embeddings.float())
    return Outputs(
        logits=torch.cat(logits),
        embeddings=torch.cat(embeddings) if embeddings else None,
        targets=torch.cat(seen),
    )


def card_targets(classes: tuple[str, ...], targets: list[int], card: ModelCard) -> list[int]:
    """Map the data's class indices onto the card's, by name."""
    index = {label: i for i, label in enumerate(card.labels)}
    unknown = sorted(set(classes) - set(index))
    if unknown:
        raise DatasetError(f"classes {unknown} are not among the model's labels")
    return [index[classes[target]] for target in targets]
