"""One pass of training and one of evaluation, with live progress and sums reduced over ranks."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from training.classification.metrics import Tally, update_tally
from training.core.distributed import all_reduce_sum
from training.core.engine import StepSettings, Throughput, Updater, apply_gradients, require_finite

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
_POSTFIX_EVERY = 10


@dataclass(frozen=True)
class Optimization(Updater):
    """An updater with the classifier's loss function."""

    criterion: nn.Module


@dataclass(frozen=True)
class EpochStats(Throughput):
    """Training loss and accuracy over one epoch (all ranks), and its speed."""

    loss: float
    top1: float
    images: int
    seconds: float


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Batch],
    optimization: Optimization,
    settings: StepSettings,
    description: str,
    *,
    frozen: Sequence[nn.Module] = (),
) -> EpochStats:
    """Train for one pass over `loader`, stepping the schedule every batch.

    `frozen` modules run in eval mode: a frozen backbone keeps its batch-norm statistics too.
    """
    model.train()
    for module in frozen:
        module.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=settings.device)  # loss, correct, count
    started = time.perf_counter()
    bar = tqdm(loader, desc=description, unit="batch", disable=not settings.progress, leave=False)
    for step, (batch_images, batch_targets, _) in enumerate(bar):
        images, targets = settings.move(batch_images, batch_targets)
        with settings.autocast():
            logits = model(images)
            loss = optimization.criterion(logits, targets)
        apply_gradients(loss, model, optimization, settings.clip_grad_norm)
        correct = (logits.detach().argmax(dim=1) == targets).sum()
        sums += torch.stack(
            [loss.detach().double() * len(targets), correct, sums.new_tensor(len(targets))]
        )
        if step % _POSTFIX_EVERY == 0:
            require_finite(loss)
            _show_progress(bar, sums, optimization.optimizer)
    all_reduce_sum(sums)
    loss_sum, correct_sum, count = sums.tolist()
    seconds = time.perf_counter() - started
    return EpochStats(loss_sum / max(count, 1), correct_sum / max(count, 1), int(count), seconds)


@dataclass(frozen=True)
class Mistake:
    """A misclassified image: its position in the evaluated split, truth and prediction."""

    position: int
    target: int
    predicted: int


def evaluate(
    model: nn.Module,
    loader: Iterable[Batch],
    num_classes: int,
    settings: StepSettings,
    *,
    description: str = "eval",
    keep_mistakes: int = 0,
) -> tuple[Tally, list[Mistake]]:
    """Confusion matrix, top-5 hits and summed cross-entropy over `loader`, summed over ranks."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    topk = 0
    loss_sum = 0.0
    mistakes: list[Mistake] = []
    bar = tqdm(loader, desc=description, unit="batch", disable=not settings.progress, leave=False)
    with torch.inference_mode():
        for batch_images, batch_targets, positions in bar:
            images, targets = settings.move(batch_images, batch_targets)
            with settings.autocast():
                logits = model(images).float()
            loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            topk += update_tally(confusion, logits, targets, k=5)
            if len(mistakes) < keep_mistakes:
                mistakes += _mistakes(logits, targets, positions)
    return _reduce(confusion, topk, loss_sum, settings.device), mistakes[:keep_mistakes]


def _mistakes(
    logits: torch.Tensor, targets: torch.Tensor, positions: torch.Tensor
) -> list[Mistake]:
    predicted = logits.argmax(dim=1).cpu()
    wrong = (predicted != targets.cpu()).nonzero().flatten().tolist()
    return [Mistake(int(positions[i]), int(targets[i]), int(predicted[i])) for i in wrong]


def _reduce(confusion: torch.Tensor, topk: int, loss_sum: float, device: torch.device) -> Tally:
    # NCCL reduces only device tensors; gloo takes CPU ones.
    confusion = all_reduce_sum(confusion.to(device)).cpu()
    scalars = all_reduce_sum(
        torch.tensor([float(topk), loss_sum], dtype=torch.float64, device=device)
    )
    return Tally(confusion, int(scalars[0].item()), float(scalars[1].item()))


def _show_progress(bar: tqdm[Batch], sums: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    loss_sum, correct, count = sums.tolist()
    loss = loss_sum / max(count, 1)
    if not math.isfinite(loss):
        raise FloatingPointError(
            "the training loss is not finite; lower --lr or set --clip-grad-norm"
        )
    lr = optimizer.param_groups[0]["lr"]
    bar.set_postfix(loss=f"{loss:.4f}", acc=f"{correct / max(count, 1):.3f}", lr=f"{lr:.2e}")
