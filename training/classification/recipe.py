"""The recipe's parts: optimizer, warmup + cosine schedule, loss, data loaders, seeding.

The schedule is a pure function of the step, so resuming (even with more epochs) only needs
the step count, and freezing the backbone is a zero learning-rate factor on its groups.
"""

import dataclasses
import logging
import math
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from app.runtime.card import InputSpec
from app.runtime.preprocessing import draft_size
from training.classification.config import TrainConfig
from training.classification.images import ImageDataset, LabeledImages
from training.classification.transforms import EvalPreset, TrainPreset, choose_augment
from training.classification.watermark import TriggerSet
from training.classification.watermark_training import Item, mix_triggers
from training.core.distributed import DistContext, EpochSampler, ShardSampler
from training.core.recipe import create_optimizer, steps_per_epoch

logger = logging.getLogger(__name__)

Loader = DataLoader[tuple[torch.Tensor, int, int]]

# The recipe's reference point: AdamW at 2e-3 for batches of 128 (Fashion-MNIST, 54,000 images).
REFERENCE_BATCH_SIZE = 128
REFERENCE_LR = 2e-3
# A scaled batch gives each epoch at least this many optimiser steps (but is never below 8);
# a batch size the user chose that gives fewer than FEW_STEPS is logged as a warning.
SCALED_MIN_STEPS = 8
SCALED_MIN_BATCH = 8
FEW_STEPS = 4


def scale_recipe(config: TrainConfig, images: int, world_size: int, log: bool) -> TrainConfig:
    """Resolve batch size and learning rate left at 0 (`auto`) for `images` training images.

    The batch is the largest power of two up to 128 that still gives each epoch several steps:
    128 on a 110-image folder is one optimiser step an epoch, 15 steps in 15 epochs.
    The learning rate follows the batch size from the reference (2e-3 at 128): with its square
    root for AdamW, linearly for SGD.
    """
    batch_size = config.batch_size or _scaled_batch_size(images, world_size)
    lr = config.lr or _scaled_lr(config.optimizer, batch_size)
    steps = steps_per_epoch(images, batch_size, world_size)
    if log and (config.batch_size == 0 or config.lr == 0):
        logger.info(
            "recipe scaled to %d training images on %d process(es): batch size %d (%d steps "
            "per epoch), lr %.3g",
            images,
            world_size,
            batch_size,
            steps,
            lr,
        )
    if log and config.batch_size and steps < FEW_STEPS:
        logger.warning(
            "--batch-size %d gives %d optimiser step(s) per epoch on %d training images (%d "
            "process(es)); leave it out to scale it to the data (here %d)",
            batch_size,
            steps,
            images,
            world_size,
            _scaled_batch_size(images, world_size),
        )
    return dataclasses.replace(config, batch_size=batch_size, lr=lr)


def _scaled_batch_size(images: int, world_size: int) -> int:
    batch_size = REFERENCE_BATCH_SIZE
    while (
        batch_size > SCALED_MIN_BATCH
        and steps_per_epoch(images, batch_size, world_size) < SCALED_MIN_STEPS
    ):
        batch_size //= 2
    return batch_size


def _scaled_lr(optimizer: str, batch_size: int) -> float:
    ratio = batch_size / REFERENCE_BATCH_SIZE
    return REFERENCE_LR * (ratio if optimizer == "sgd" else math.sqrt(ratio))


def build_optimizer(model: nn.Module, head: str, config: TrainConfig) -> torch.optim.Optimizer:
    """A classifier's optimizer: no weight decay on biases and norms; backbone and head groups."""
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        part = "head" if name.startswith(f"backbone.{head}.") else "backbone"
        groups.setdefault((part, parameter.ndim > 1), []).append(parameter)
    param_groups = [
        {"params": params, "part": part, "weight_decay": config.weight_decay if decay else 0.0}
        for (part, decay), params in sorted(groups.items())
    ]
    return create_optimizer(param_groups, config)


def build_criterion(
    targets: list[int], num_classes: int, config: TrainConfig, device: torch.device
) -> nn.Module:
    """Cross-entropy with label smoothing, and inverse-frequency class weights if asked."""
    weight = None
    if config.balance == "weights":
        weight = class_weights(targets, num_classes).to(device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def class_weights(targets: list[int], num_classes: int) -> torch.Tensor:
    """n / (classes * count_c): mean weight 1 over the training images."""
    counts = Counter(targets)
    total = len(targets)
    return torch.tensor(
        [total / (num_classes * max(counts[c], 1)) for c in range(num_classes)],
        dtype=torch.float32,
    )


@dataclass(frozen=True)
class Loaders:
    """The training loader with its sampler, and the evaluation loaders."""

    train: Loader
    sampler: EpochSampler
    val: Loader
    triggers: Loader | None = None  # the watermark's trigger set, when the run has one


def build_loaders(
    config: TrainConfig,
    train: LabeledImages,
    val: LabeledImages,
    spec: InputSpec,
    context: DistContext,
    *,
    triggers: TriggerSet | None = None,
) -> Loaders:
    """Sharded, seeded loaders; the train sampler draws class-balanced when asked.

    A watermark's triggers join the training set (oversampled) and get their own eval loader.
    """
    augment = choose_augment(config.augment, spec.tensor_size[0])
    dataset: Dataset[Item] = ImageDataset(train, TrainPreset(spec, augment, config.random_erasing))
    trigger_samples = 0
    if triggers is not None:
        dataset, trigger_samples = mix_triggers(
            dataset, len(train), triggers, spec, config.trigger_share
        )
    weights = None
    if config.balance == "sampler":
        per_class = class_weights(train.targets, max(train.targets) + 1)
        # Triggers weigh what an average training image weighs (the class weights' mean is 1).
        weights = [float(per_class[target]) for target in train.targets]
        weights += [1.0] * trigger_samples
    size = len(train) + trigger_samples
    sampler = EpochSampler(size, config.seed, context.rank, context.world_size, weights)
    loader = DataLoader(
        dataset,
        config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        pin_memory=context.device.type == "cuda",
        drop_last=len(sampler) > config.batch_size,
        generator=torch.Generator(),
    )
    trigger_loader = None
    if triggers is not None:
        trigger_loader = eval_loader(triggers.images, spec, config, context)
    return Loaders(loader, sampler, eval_loader(val, spec, config, context), trigger_loader)


def eval_loader(
    images: LabeledImages, spec: InputSpec, config: TrainConfig, context: DistContext
) -> Loader:
    """Images through the service's decoding and preprocessing, this rank's shard only."""
    dataset = ImageDataset(images, EvalPreset(spec), draft_size(spec))
    sampler = ShardSampler(len(dataset), context.rank, context.world_size)
    return DataLoader(
        dataset,
        config.batch_size * 2,
        sampler=sampler,
        num_workers=config.workers,
        pin_memory=context.device.type == "cuda",
    )
