"""Optimiser, warmup + cosine schedule and seeding, the same for every task."""

import logging
import math
import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from training.core.config import RunConfig
from training.core.distributed import EpochSampler

logger = logging.getLogger(__name__)


def steps_per_epoch(images: int, batch_size: int, world_size: int) -> int:
    """Optimiser steps in one epoch: each rank's share, the last partial batch dropped if any."""
    per_rank = math.ceil(images / world_size)
    return per_rank // batch_size if per_rank > batch_size else 1


def create_optimizer(
    param_groups: list[dict[str, Any]], config: RunConfig
) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum, over the task's parameter groups."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(param_groups, lr=config.lr)


def decayed_weights_optimizer(module: nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    """`create_optimizer` with weight decay on matrices and kernels only (not biases, norms)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for parameter in module.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim > 1 else no_decay).append(parameter)
    # This order (decay first) is what detector checkpoints store their optimizer state in.
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return create_optimizer(groups, config)


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to `min_ratio` at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    config: RunConfig,
    steps_per_epoch: int,
    step: int,
    frozen_epochs: int = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule positioned at `step` (0 for a fresh run).

    Groups whose `part` is "backbone" get a zero factor for the first `frozen_epochs`.
    """
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    frozen_until = frozen_epochs * steps_per_epoch

    def schedule_for(part: str) -> Callable[[int], float]:
        def factor(s: int) -> float:
            if part == "backbone" and s < frozen_until:
                return 0.0
            return lr_factor(s, total, warmup, config.min_lr_ratio)

        return factor

    lambdas = [schedule_for(group.get("part", "")) for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas, last_epoch=step - 1)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; optionally insist on deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS reads this when its first handle is created; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def seed_epoch(
    sampler: EpochSampler, loader: DataLoader[Any], seed: int, epoch: int, rank: int
) -> None:
    """Make an epoch's order and augmentation a function of (seed, epoch, rank) alone.

    That is what lets a resumed run repeat, image for image, what an uninterrupted one does.
    """
    sampler.set_epoch(epoch)
    epoch_seed = (seed * 1_000_003 + epoch * 1009 + rank) % 2**63
    torch.manual_seed(epoch_seed)
    if loader.generator is not None:
        loader.generator.manual_seed(epoch_seed)
