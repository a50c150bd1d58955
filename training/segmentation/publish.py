"""Export a finished segmenter run folder (best.pt + metrics.json) into the model store.

The archive must give the eager model's logits (within a tolerance) and the same class per
pixel on fixed images and on real ones before it is written.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from app.runtime.card import ModelCard, SegmentationSpec
from training.core.checkpoint import BEST, load_checkpoint
from training.core.export import PARITY_SEED, ExportError, export_model, framework_versions
from training.core.publish import copy_report_files, read_run_report, report_evaluation
from training.segmentation.config import SegmentationTrainConfig
from training.segmentation.models import Segmenter, SegmenterConfig
from training.segmentation.report import REPORT_FILES

logger = logging.getLogger(__name__)

# Logits may differ by float reassociation (frozen batch norm folded into convolutions); the
# argmax may differ only where two classes are within that of each other.
_LOGIT_ATOL = 1e-3
_MAX_FLIPPED_PIXELS = 1e-4


def export_segmenter_run(
    run_dir: Path,
    store: Path | None = None,
    parity_images: Sequence[torch.Tensor] = (),
    *,
    name: str | None = None,
    version: str | None = None,
) -> Path:
    """Export run_dir's best weights with a card built from its metrics.json; return the folder.

    `parity_images`: real images (uint8 [3, S, S], as served) added to the parity check.
    """
    checkpoint = load_checkpoint(run_dir / BEST)
    config = SegmentationTrainConfig.from_dict(checkpoint.config)
    module = Segmenter(SegmenterConfig(**checkpoint.extra["segmenter"]), weights="none")
    module.load_state_dict(checkpoint.model)
    report = read_run_report(run_dir)
    source = f"visionserve training run {run_dir.name}"
    card = ModelCard.model_validate(
        {
            "name": name or config.model_name,
            "version": version or config.model_version,
            "task": "segment",
            "architecture": config.arch,
            "framework": framework_versions(),
            "labels": checkpoint.labels,
            "input": checkpoint.input_spec,
            "segmentation": SegmentationSpec(),
            "metrics": [
                report_evaluation(report, report["split"], source),
                report_evaluation(report, "val", source),
            ],
            "training": report["training"],
        }
    )
    images = list(parity_images)

    def parity(eager: nn.Module, scripted: torch.jit.ScriptModule, card: ModelCard) -> None:
        check_segmentation_parity(eager, scripted, card, images)

    directory = export_model(module.eval(), card, store or config.store, parity=parity)
    copy_report_files(run_dir, directory, REPORT_FILES)
    return directory


def segmentation_parity_inputs(card: ModelCard) -> torch.Tensor:
    """Smooth seeded noise at the card's square (blob-like, so classes other than background
    show up), as a batch of 3."""
    side = card.input.resize_size
    generator = torch.Generator().manual_seed(PARITY_SEED)
    coarse = torch.rand(3, card.input.channels, 6, 6, generator=generator)
    smooth = nn.functional.interpolate(coarse, size=(side, side), mode="bilinear")
    return (smooth * 255).round().to(torch.uint8)


def check_segmentation_parity(
    eager: nn.Module,
    scripted: torch.jit.ScriptModule,
    card: ModelCard,
    extra_inputs: Sequence[torch.Tensor] = (),
) -> None:
    """Raise ExportError unless both give the same logits shape, close logits, same classes."""
    inputs = segmentation_parity_inputs(card)
    if extra_inputs:
        inputs = torch.cat([inputs, torch.stack(list(extra_inputs))])
    with torch.inference_mode():
        expected, actual = eager(inputs), scripted(inputs)
    if expected.shape != actual.shape or expected.shape[1] != len(card.labels):
        raise ExportError(
            f"logits shape eager {tuple(expected.shape)}, scripted {tuple(actual.shape)}, "
            f"labels {len(card.labels)}"
        )
    difference = float((expected - actual).abs().max())
    flipped = float((expected.argmax(dim=1) != actual.argmax(dim=1)).float().mean())
    if difference > _LOGIT_ATOL or flipped > _MAX_FLIPPED_PIXELS:
        raise ExportError(
            f"scripted logits differ from eager by {difference:.3g} (> {_LOGIT_ATOL}) or "
            f"change the class of {flipped:.3%} of pixels"
        )
    logger.info(
        "export parity (segmenter): %d images, max |eager - scripted| = %.3g, %.4f%% pixels differ",
        len(inputs),
        difference,
        flipped * 100,
    )
