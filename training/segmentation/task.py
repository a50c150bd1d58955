"""The segmentation task as the command line and the model store see it."""

from training.core.task import Task
from training.segmentation.cli import (
    add_segmentation_options,
    check_segmentation,
    evaluate_segmentation,
)
from training.segmentation.config import SegmentationTrainConfig
from training.segmentation.models import SEGMENTER_ARCHS
from training.segmentation.publish import export_segmenter_run
from training.segmentation.sources import is_segmentation_source
from training.segmentation.trainer import train_segmenter


def _claims(arch: str | None, data: str | None) -> bool:
    """A segmenter architecture (COCO data too), or a mask folder, or builtin:scenes-seg."""
    return arch in SEGMENTER_ARCHS or (data is not None and is_segmentation_source(data))


TASK = Task(
    name="segment",
    title="segmentation",
    config=SegmentationTrainConfig,
    defaults=SegmentationTrainConfig(data=""),
    archs=SEGMENTER_ARCHS,
    claims=_claims,
    add_options=add_segmentation_options,
    train=train_segmenter,
    export_run=export_segmenter_run,
    evaluate=evaluate_segmentation,
    check=check_segmentation,
)
