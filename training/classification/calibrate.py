"""`python -m training calibrate` (and the end of `train`): fit and store a model's decisions.

The exported model is run as the service runs it on held-out images of its classes, on training
images (the kNN references) and optionally on unknown images; the fitted temperature, open-set
method and thresholds go into its card, the references into its archive, and a reliability
diagram beside it. Bad input stops before anything is fitted.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app.runtime.card import CalibrationSpec, ModelCard
from app.runtime.loader import LoadedModel
from app.runtime.openset import calibrated_probabilities
from training.classification.artifact import Outputs, card_targets, load_classifier, model_outputs
from training.classification.calibration import CalibrationData, DecisionGoals, fit_calibration
from training.classification.decision_plots import RELIABILITY_PNG, plot_reliability
from training.classification.heldout import splits_as_trained
from training.classification.images import LabeledImages
from training.classification.unknowns import load_unknown, overlapping
from training.core.datacheck import DatasetError
from training.core.export import rewrite_archive

logger = logging.getLogger(__name__)

MIN_HELD_OUT_IMAGES = 200
# 5,000 references score within 0.002 AUROC of 10,000 on the three real unknown sets with
# fashion-products, for half the search per image (README "Decisions").
DEFAULT_REFERENCES = 5_000
_REFERENCE_SEED = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationRun:
    """What to calibrate, on which images, towards which goals."""

    model_dir: Path
    classes: tuple[str, ...]
    held_out: LabeledImages
    held_out_name: str
    train: LabeledImages | None  # the kNN references are drawn from it
    unknown: LabeledImages | None = None
    unknown_name: str | None = None
    goals: DecisionGoals = field(default_factory=DecisionGoals)
    references: int = DEFAULT_REFERENCES
    batch_size: int = 256
    workers: int = 2
    progress: bool = True


def calibrate(run: CalibrationRun) -> CalibrationSpec:
    """Fit, check, write the calibrated archive and card, and draw the reliability diagram."""
    loaded = load_classifier(run.model_dir)
    check_inputs(run, loaded.card)
    held_out = _outputs(run, loaded, run.held_out, run.classes, "held-out")
    references = _references(run, loaded)
    unknown = _outputs(run, loaded, run.unknown, (), "unknown") if run.unknown else None
    data = CalibrationData(
        held_out=held_out,
        held_out_name=run.held_out_name,
        references=references,
        unknown=unknown,
        unknown_name=run.unknown_name,
    )
    spec, found = fit_calibration(data, run.goals)
    card = ModelCard.model_validate(loaded.card.model_dump() | {"calibration": spec.model_dump()})
    stored = references if spec.open_set.method == "knn" else None
    rewrite_archive(loaded.module, card, run.model_dir.parent, references=stored)
    plot_reliability(
        {
            f"softmax (ECE {spec.ece_before:.4f})": held_out.logits.softmax(dim=1),
            f"T = {spec.temperature:.3f} (ECE {spec.ece_after:.4f})": calibrated_probabilities(
                held_out.logits, spec.temperature
            ),
        },
        held_out.targets,
        run.model_dir / RELIABILITY_PNG,
        f"{card.name} on {run.held_out_name}",
    )
    logger.info("%s", describe(spec, [f"{c.label} AUROC {c.auroc:.4f}" for c in found if c.auroc]))
    return spec


def check_inputs(run: CalibrationRun, card: ModelCard) -> None:
    """Refuse data that cannot give an honest calibration, before any fitting."""
    if len(card.labels) < 2:
        raise DatasetError(f"{card.name} has a single class; there is nothing to calibrate")
    present = set(run.held_out.targets)
    if len(present) < 2:
        raise DatasetError(
            f"{run.held_out_name} holds images of {len(present)} class; calibration needs "
            "held-out images of at least 2 classes"
        )
    if len(run.held_out) < MIN_HELD_OUT_IMAGES:
        raise DatasetError(
            f"{run.held_out_name} has {len(run.held_out)} images; calibration needs at least "
            f"{MIN_HELD_OUT_IMAGES} held-out images (add images or use a larger --val-fraction)"
        )
    if run.unknown is not None:
        known = [run.held_out] + ([run.train] if run.train is not None else [])
        same = overlapping(known, run.unknown)
        if same:
            raise DatasetError(
                f"{len(same)} of the unknown images are also images of the known classes "
                f"(same content), e.g. {', '.join(same[:3])}; the unknown set must hold "
                "none of the model's classes"
            )


def describe(spec: CalibrationSpec, compared: list[str]) -> str:
    """A few lines for the log and the console."""
    open_set = spec.open_set
    k = f" (k={open_set.k}, {open_set.references} references)" if open_set.k else ""
    lines = [
        f"calibration on {spec.data}: temperature {spec.temperature:.4f}, "
        f"ECE {spec.ece_before:.4f} -> {spec.ece_after:.4f}",
        f"open set: {open_set.method}{k}, threshold {open_set.threshold:.6g} for "
        f"TPR {open_set.target_tpr:.0%} (measured {open_set.tpr_known:.2%} on known)",
        f"accept probability {spec.accept_probability:.4f}: {spec.accept_rule}",
        open_set.note,
    ]
    if open_set.fpr_unknown is not None:
        lines.append(f"on {open_set.unknown_data}: FPR {open_set.fpr_unknown:.2%}")
    if compared:
        lines.append("compared: " + "; ".join(compared))
    return "\n".join(lines)


def held_out_from_source(
    card: ModelCard, source: str, split: str, workers: int
) -> tuple[tuple[str, ...], LabeledImages, LabeledImages, str]:
    """(classes, held-out split, train split, name) of a data source, split as in training.

    The validation split is re-drawn with the fractions and seed the model's run recorded, so
    the held-out images are the ones training held out.
    """
    data = splits_as_trained(card, source, workers)
    if split == "val":
        held_out = data.val
    elif split == "test" and data.test is not None:
        held_out = data.test
    else:
        raise DatasetError(f"--split must be val or test (with a test split); got {split!r}")
    return data.classes, held_out, data.train, f"{data.dataset} {split} ({len(held_out)} images)"


def unknown_from_source(
    source: str | None, workers: int
) -> tuple[LabeledImages | None, str | None]:
    """The unknown images and their name for the card, or (None, None)."""
    if source is None:
        return None, None
    images = load_unknown(source, workers)
    return images, f"{source} ({len(images)} images)"


def _outputs(
    run: CalibrationRun,
    loaded: LoadedModel,
    images: LabeledImages,
    classes: tuple[str, ...],
    description: str,
) -> Outputs:
    """Outputs on `images`; `classes` maps their targets onto the card's (none: unknown images)."""
    targets = card_targets(classes, images.targets, loaded.card) if classes else images.targets
    return model_outputs(
        loaded,
        images,
        targets,
        batch_size=run.batch_size,
        workers=run.workers,
        progress=run.progress,
        description=description,
    )


def _references(run: CalibrationRun, loaded: LoadedModel) -> torch.Tensor | None:
    """Embeddings of up to `run.references` training images, drawn with a fixed seed."""
    if not loaded.card.embeds or run.train is None or len(run.train) == 0:
        return None
    generator = torch.Generator().manual_seed(_REFERENCE_SEED)
    count = min(run.references, len(run.train))
    chosen = sorted(torch.randperm(len(run.train), generator=generator)[:count].tolist())
    images = run.train.select(chosen)
    outputs = model_outputs(
        loaded,
        images,
        [0] * len(images),
        batch_size=run.batch_size,
        workers=run.workers,
        progress=run.progress,
        description="references",
    )
    if outputs.embeddings is None:
        return None
    # Stored as float16 in the archive (half the size); fitting on the rounded values keeps the
    # threshold exact for what the service will compute.
    return outputs.embeddings.half().float()
