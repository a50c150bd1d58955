"""The watermark during a training run: the triggers mixed into training, measured, recorded.

Triggers go into the training set only, oversampled to a fixed share of each epoch, so the
sharded epoch sampler spreads them over ranks and batches like any image; validation and test
never see them. They pass the eval preset, not augmentation: `watermark verify` shows them as
the service preprocesses them, and that is the view the model must learn.
"""

import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset

from app.runtime.card import InputSpec, WatermarkSpec
from training.classification.config import TrainConfig
from training.classification.images import ImageDataset
from training.classification.transforms import EvalPreset
from training.classification.watermark import SCHEME, TriggerSet, read_key, trigger_set
from training.core.checkpoint import Checkpoint
from training.core.config import ConfigError

logger = logging.getLogger(__name__)

Item = tuple[torch.Tensor, int, int]
# The checkpoint's record of the key, so a resumed run cannot switch keys unnoticed.
KEY_ID_FIELD = "watermark_key_id"
REDACTED_KEY = "KEY_FILE"


def run_triggers(
    config: TrainConfig, spec: InputSpec, classes: int, resume: Checkpoint | None
) -> TriggerSet | None:
    """The run's trigger set (None without --watermark-key), checked against a resumed run's."""
    if config.watermark_key is None:
        return None
    key = read_key(Path(config.watermark_key))
    if resume is not None and resume.extra.get(KEY_ID_FIELD) != key.key_id:
        raise ConfigError(
            f"--watermark-key {config.watermark_key} is key {key.key_id}, but the resumed run "
            f"learned key {resume.extra.get(KEY_ID_FIELD)}"
        )
    return trigger_set(key, config.trigger_count, classes, spec)


def trigger_repeats(train_images: int, triggers: int, share: float) -> int:
    """How many copies of the trigger set make about `share` of an epoch (at least one)."""
    return max(1, round(share * train_images / ((1 - share) * triggers)))


def mix_triggers(
    dataset: Dataset[Item], train_images: int, triggers: TriggerSet, spec: InputSpec, share: float
) -> tuple[Dataset[Item], int]:
    """The training set with the triggers appended `repeats` times; (dataset, trigger samples)."""
    repeats = trigger_repeats(train_images, len(triggers), share)
    mixed: ConcatDataset[Item] = ConcatDataset(
        [dataset, *[trigger_dataset(triggers, spec)] * repeats]
    )
    samples = repeats * len(triggers)
    logger.info(
        "watermark key %s: %d triggers x %d per epoch = %.1f%% of training samples",
        triggers.key_id,
        len(triggers),
        repeats,
        100 * samples / (samples + train_images),
    )
    return mixed, samples


def trigger_dataset(triggers: TriggerSet, spec: InputSpec) -> ImageDataset:
    """The triggers as the service would preprocess them."""
    return ImageDataset(triggers.images, EvalPreset(spec))


def watermark_record(triggers: TriggerSet, accuracy: float) -> dict[str, Any]:
    """metrics.json's `watermark`, which export copies into the card (no key, no triggers)."""
    spec = WatermarkSpec(
        scheme=SCHEME,
        trigger_count=len(triggers),
        classes=triggers.classes,
        trigger_accuracy_at_export=round(accuracy, 6),
        key_id=triggers.key_id,
    )
    return spec.model_dump()


def redact_key_path(config: TrainConfig, record: dict[str, Any]) -> dict[str, Any]:
    """The card's training record without the key file's path (command line and recipe)."""
    path = config.watermark_key
    if path is None:
        return record
    recipe = dict(record["recipe"]) | {"watermark_key": REDACTED_KEY}
    command = str(record["command"]).replace(path, REDACTED_KEY)
    return record | {"recipe": recipe, "command": command}
