"""The classification task as the command line and the model store see it."""

from training.classification.cli import (
    CALIBRATION_OPTIONS,
    add_classification_options,
    check_classification,
    evaluate_classifier,
)
from training.classification.config import TrainConfig
from training.classification.models import model_names
from training.classification.publish import export_classifier_run
from training.classification.trainer import train
from training.core.task import RESUME_OPTIONS, Task


def _claims(arch: str | None, data: str | None) -> bool:
    """Classification is the default task: whatever no other task claims."""
    return True


TASK = Task(
    name="classify",
    title="classification",
    config=TrainConfig,
    defaults=TrainConfig(data=""),
    archs=tuple(model_names()[:8]),
    claims=_claims,
    add_options=add_classification_options,
    train=train,
    export_run=export_classifier_run,
    evaluate=evaluate_classifier,
    check=check_classification,
    resume_options=RESUME_OPTIONS | CALIBRATION_OPTIONS,
)
