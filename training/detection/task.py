"""The detection task as the command line and the model store see it."""

from training.core.task import Task
from training.detection.cli import add_detection_options, check_detection, evaluate_detection
from training.detection.config import DetectionTrainConfig
from training.detection.data import is_coco_source
from training.detection.models import DETECTOR_ARCHS
from training.detection.publish import export_detector_run
from training.detection.trainer import train_detector


def _claims(arch: str | None, data: str | None) -> bool:
    """A detector architecture, or COCO data (a folder with instances JSON, builtin:scenes)."""
    return arch in DETECTOR_ARCHS or (data is not None and is_coco_source(data))


TASK = Task(
    name="detect",
    title="detection",
    config=DetectionTrainConfig,
    defaults=DetectionTrainConfig(data=""),
    archs=DETECTOR_ARCHS,
    claims=_claims,
    add_options=add_detection_options,
    train=train_detector,
    export_run=export_detector_run,
    evaluate=evaluate_detection,
    check=check_detection,
)
