"""`export --model models/NAME --quantize int8`: an int8 copy of an exported fp32 classifier.

The eager model is rebuilt from the fp32 archive (and checked to give its outputs), quantized
with activation ranges observed on images of its own training split, and scored beside the fp32
archive on the held-out test split, each image decoded as the service decodes an upload. Export
refuses, writing nothing, when top-1 drops by more than the bound; otherwise the archive goes
through the exporter's parity check against the int8 module it was scripted from, and its card
records the precision, the calibration images and both top-1s.
"""

import copy
import dataclasses
import logging
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from app.runtime.card import Evaluation, ModelCard, QuantizationSpec
from app.runtime.inference import split_outputs
from app.runtime.loader import LoadedModel, load_model
from training.classification.artifact import UploadedImages, card_targets
from training.classification.heldout import evaluation_split, splits_as_trained
from training.classification.images import LabeledImages
from training.classification.metrics import (
    ClassificationMetrics,
    Tally,
    compute_metrics,
    update_tally,
)
from training.classification.models import (
    SMALL_CNNS,
    STATE_DICT_SOURCE,
    build_classifier,
    last_linear_name,
)
from training.classification.modules import (
    ExplainingClassifier,
    ExportedClassifier,
    NormalizedClassifier,
    exported_classifier,
)
from training.classification.recover import rebuild_classifier
from training.core.config import ConfigError
from training.core.export import check_parity, export_model, framework_versions
from training.core.quantize import BACKEND, SCHEME, QuantizationError, quantize_int8

logger = logging.getLogger(__name__)

# The rebuilt eager fp32 model must give the archive's outputs up to float rounding.
_REBUILD_ATOL = 1e-3
# The int8 archive against the int8 module it was scripted from: the same kernels, but
# freezing may fold the input scaling differently, moving a value by a fraction of a step.
INT8_PARITY_ATOL = 1e-2


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantizeRequest:
    """What `export --quantize int8` was asked for."""

    model_dir: Path
    data: str | None
    name: str | None
    store: Path
    calibration_images: int = 1024
    max_accuracy_loss: float = 1.0  # points of top-1
    batch_size: int = 256
    workers: int = 2
    seed: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Comparison:
    """fp32 and int8 on the same held-out images."""

    data: str
    fp32: ClassificationMetrics
    int8: ClassificationMetrics
    agreement: float

    @property
    def loss_points(self) -> float:
        """Top-1 lost to quantization, in percentage points."""
        return 100.0 * (self.fp32.top1 - self.int8.top1)


def export_int8(request: QuantizeRequest) -> Path:
    """Quantize, measure against fp32, refuse past the bound, else export; the new folder."""
    loaded = load_model(request.model_dir, torch.device("cpu"))
    card = loaded.card
    if card.task != "classify":
        raise ConfigError(
            f"{request.model_dir} is a {card.task} model: --quantize int8 covers classifiers "
            "only (detectors and segmenters are served in fp32)"
        )
    if card.precision != "fp32":
        raise ConfigError(f"{request.model_dir} is already {card.precision}")
    source = request.data or _recipe_data(card)
    name = request.name or f"{card.name}-int8"
    if (request.store / name).exists():
        raise ConfigError(f"{request.store / name} exists; remove it or choose another --name")
    eager = eager_classifier(loaded)
    calibration_name, calibration = _calibration_batches(request, loaded, source)
    int8 = quantized_classifier(eager, calibration)
    comparison = compare(loaded, int8, source, request)
    logger.info(
        "%s top-1: fp32 %.4f, int8 %.4f (%.2f points lost; bound %.2f), agreement %.4f",
        comparison.data,
        comparison.fp32.top1,
        comparison.int8.top1,
        comparison.loss_points,
        request.max_accuracy_loss,
        comparison.agreement,
    )
    if comparison.loss_points > request.max_accuracy_loss:
        raise QuantizationError(
            f"int8 top-1 {comparison.int8.top1:.4f} is {comparison.loss_points:.2f} points below "
            f"fp32 {comparison.fp32.top1:.4f} on {comparison.data}, past the bound of "
            f"{request.max_accuracy_loss} (--max-accuracy-loss); nothing written"
        )
    spec = QuantizationSpec(
        scheme=SCHEME,
        backend=BACKEND,
        calibration_data=calibration_name,
        calibration_images=request.calibration_images,
        reference_sha256=loaded.sha256,
        data=comparison.data,
        images=comparison.int8.count,
        top1_fp32=comparison.fp32.top1,
        top1_int8=comparison.int8.top1,
        agreement=comparison.agreement,
        max_loss=request.max_accuracy_loss,
    )
    int8_card = quantized_card(card, name, spec, comparison)
    return export_model(int8, int8_card, request.store, atol=INT8_PARITY_ATOL)


def quantized_classifier(
    eager: ExportedClassifier, calibration: list[torch.Tensor]
) -> ExportedClassifier:
    """`eager` with its convolutional trunk in int8, observed on the calibration uint8 batches.

    The uint8 -> float normalisation (per channel), the pooling, the head and the activation
    maps stay fp32: they are a sliver of the work, and the head's weight is read directly.
    """
    name = "trunk" if isinstance(eager, ExplainingClassifier) else "features"
    normalised = [batch.float() * eager.scale + eager.shift for batch in calibration]
    int8 = copy.deepcopy(eager)
    int8.set_submodule(name, quantize_int8(eager.get_submodule(name), normalised))
    return int8.eval()


def eager_classifier(loaded: LoadedModel) -> ExportedClassifier:
    """The eager form of an exported fp32 classifier, checked to give the archive's outputs."""
    card = loaded.card
    weights = str((card.training or {}).get("weights", ""))
    if card.architecture in SMALL_CNNS:
        classifier = rebuild_classifier(loaded.module, card)
    elif weights.startswith("torchvision"):
        classifier = _torchvision_classifier(card, "imagenet")
    elif weights.startswith(STATE_DICT_SOURCE):
        # The frozen archive keeps no state dict: re-read the file it was exported from (the
        # parity check below refuses it if that file has changed since).
        classifier = _torchvision_classifier(card, weights.removeprefix(STATE_DICT_SOURCE))
    else:
        raise ConfigError(
            f"{card.name} ({card.architecture}) cannot be rebuilt as an eager model from its "
            "archive; quantize a SmallCNN archive, a torchvision-pretrained export or an export "
            "of a state dict file that is still there"
        )
    eager = exported_classifier(classifier, last_linear_name(classifier.backbone))
    try:
        check_parity(eager, loaded.module, card, atol=_REBUILD_ATOL)
    except RuntimeError as error:
        message = f"the rebuilt eager model differs from the archive: {error}"
        raise QuantizationError(message) from error
    return eager


def _torchvision_classifier(card: ModelCard, weights: str) -> NormalizedClassifier:
    """A torchvision architecture with `weights` (as `export --weights` takes them)."""
    built = build_classifier(card.architecture, weights, card.labels)
    norm = built.input.normalization
    if norm is None:
        raise ConfigError(f"{card.architecture} has no normalisation to rebuild it with")
    return NormalizedClassifier(built.model, norm.mean, norm.std)


def compare(
    loaded: LoadedModel, int8: nn.Module, source: str, request: QuantizeRequest
) -> Comparison:
    """Top-1 (and the rest of the metrics) of both models on the held-out test split."""
    classes, images, split = evaluation_split(loaded.card, source, "test", request.workers)
    targets = torch.tensor(card_targets(classes, images.targets, loaded.card))
    loader = _loader(images, targets.tolist(), loaded.card, request)
    fp32_logits, int8_logits = [], []
    with torch.inference_mode():
        for pixels, _ in loader:
            fp32_logits.append(_logits(loaded.module, pixels, loaded.card))
            int8_logits.append(_logits(int8, pixels, loaded.card))
    fp32, quantized = torch.cat(fp32_logits), torch.cat(int8_logits)
    agreement = (fp32.argmax(1) == quantized.argmax(1)).float().mean().item()
    return Comparison(
        data=f"{source} {split} ({len(targets)} images)",
        fp32=_metrics(fp32, targets, loaded.card),
        int8=_metrics(quantized, targets, loaded.card),
        agreement=agreement,
    )


def quantized_card(
    card: ModelCard, name: str, spec: QuantizationSpec, comparison: Comparison
) -> ModelCard:
    """The fp32 card as int8: its metrics measured now; decisions left to `calibrate`."""
    source, _, split = comparison.data.partition(" ")
    evaluation = Evaluation(
        dataset=source,
        split=split,
        values=comparison.int8.summary(),
        per_class=comparison.int8.per_class,
        source="int8 archive scored by training/classification/quantize.py",
    )
    training = dict(card.training or {}) | {
        "quantized_from": f"{card.name} {card.version} (sha256 {spec.reference_sha256})",
        # Temperature, thresholds and kNN references were fitted to fp32 outputs.
        "calibration": "re-fit on the int8 outputs with `python -m training calibrate`",
    }
    return ModelCard.model_validate(
        card.model_dump()
        | {
            "name": name,
            "created_at": datetime.now(UTC),
            "framework": framework_versions(),
            "metrics": (evaluation.model_dump(),),
            "training": training,
            "calibration": None,
            "similarity": None,
            "precision": "int8",
            "quantization": spec.model_dump(),
        }
    )


def _calibration_batches(
    request: QuantizeRequest, loaded: LoadedModel, source: str
) -> tuple[str, list[torch.Tensor]]:
    """A seeded sample of the training split, decoded as uploads, in batches."""
    if request.calibration_images < 1:
        raise ConfigError("--calibration-images must be at least 1")
    classes, images, split = _training_split(loaded.card, source, request.workers)
    if len(images) < request.calibration_images:
        raise ConfigError(
            f"{source} {split} has {len(images)} images, fewer than --calibration-images "
            f"{request.calibration_images}"
        )
    generator = torch.Generator().manual_seed(request.seed)
    chosen = torch.randperm(len(images), generator=generator)[: request.calibration_images]
    targets = card_targets(classes, images.targets, loaded.card)
    dataset = Subset(UploadedImages(images, targets, loaded.card), chosen.tolist())
    loader = DataLoader(dataset, request.batch_size, num_workers=request.workers)
    name = f"{source} {split}: {len(chosen)} images drawn with seed {request.seed}"
    return name, [pixels for pixels, _ in loader]


def _training_split(
    card: ModelCard, source: str, workers: int
) -> tuple[tuple[str, ...], LabeledImages, str]:
    """The images the model was trained on: its run's own draw when the card has the recipe
    (so held-out validation images are not among them), else the data's train split."""
    if isinstance((card.training or {}).get("recipe"), dict):
        data = splits_as_trained(card, source, workers)
        return data.classes, data.train, f"train ({data.split_note})"
    return evaluation_split(card, source, "train", workers)


def _loader(
    images: LabeledImages, targets: list[int], card: ModelCard, request: QuantizeRequest
) -> DataLoader[tuple[torch.Tensor, int]]:
    dataset = UploadedImages(images, targets, card)
    return DataLoader(dataset, request.batch_size, num_workers=request.workers)


def _logits(module: nn.Module, pixels: torch.Tensor, card: ModelCard) -> torch.Tensor:
    logits, _ = split_outputs(module(pixels), card, len(pixels))
    return logits.float()


def _metrics(logits: torch.Tensor, targets: torch.Tensor, card: ModelCard) -> ClassificationMetrics:
    labels = card.labels
    confusion = torch.zeros(len(labels), len(labels), dtype=torch.int64)
    topk = update_tally(confusion, logits, targets, k=min(5, len(labels)))
    loss = nn.functional.cross_entropy(logits, targets, reduction="sum")
    return compute_metrics(Tally(confusion, topk, loss.item()), labels)


def _recipe_data(card: ModelCard) -> str:
    recipe = (card.training or {}).get("recipe")
    data = recipe.get("data") if isinstance(recipe, dict) else None
    if not isinstance(data, str):
        raise ConfigError(f"{card.name}'s card names no training data; pass --data")
    return data
