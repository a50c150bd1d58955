"""The epoch loop every task shares: train, validate, keep the best, checkpoint, stop early.

A task hands `fit` a `FitTask`: how to run one epoch (train and validate) and how to write a
checkpoint. The loop owns what must not drift between tasks: the best-epoch rule (score, then
loss, then the later epoch), early stopping, results.csv, best.pt and last.pt, and that only
rank 0 writes. Tasks seed each epoch with `training.core.recipe.seed_epoch`.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from training.core.checkpoint import (
    BEST,
    LAST,
    Checkpoint,
    TrainState,
    save_checkpoint,
    weights_on_cpu,
)
from training.core.report import RESULTS_CSV, write_results_csv

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class EpochResult:
    """One trained and validated epoch, as the task measured it."""

    row: dict[str, float]  # the results.csv row, without `epoch` and `epoch_s` (fit adds them)
    score: float  # higher is better: val top-1, val mAP
    loss: float | None  # the tie-break, lower is better; None when the task has none
    summary: str  # the log line's measurements


@dataclass(kw_only=True)
class FitTask:
    """What one task gives the loop."""

    model: nn.Module  # the unwrapped model whose weights are kept as the best
    state: TrainState
    epochs: int
    patience: int
    score_name: str  # for the early-stopping message, e.g. "val top-1"
    steps_per_epoch: int
    run_dir: Path
    is_main: bool
    run_epoch: Callable[[int, str], EpochResult]  # (epoch index, progress description)
    checkpoint: Callable[[], Checkpoint]
    best_weights: dict[str, torch.Tensor] = field(default_factory=dict)


def fit(task: FitTask) -> dict[str, torch.Tensor]:
    """Train from `task.state.epoch` to `task.epochs` or an early stop; return the best weights."""
    best = task.best_weights or weights_on_cpu(task.model)
    state = task.state
    for epoch in range(state.epoch, task.epochs):
        started = time.perf_counter()
        result = task.run_epoch(epoch, f"epoch {epoch + 1}/{task.epochs}")
        row = {"epoch": epoch + 1, **result.row, "epoch_s": time.perf_counter() - started}
        improved = state.record_epoch(row, result.score, task.steps_per_epoch, result.loss)
        if improved:
            best = weights_on_cpu(task.model)
        if task.is_main:
            logger.info("epoch %d: %s%s", epoch + 1, result.summary, " *" if improved else "")
            _save(task, improved)
        if state.patience_exhausted(task.patience):
            logger.info(
                "early stop: %s has not improved for %d epochs", task.score_name, task.patience
            )
            break
    return best


def _save(task: FitTask, improved: bool) -> None:
    checkpoint = task.checkpoint()
    save_checkpoint(checkpoint, task.run_dir / LAST)
    if improved:
        save_checkpoint(checkpoint, task.run_dir / BEST)
    write_results_csv(task.state.history, task.run_dir / RESULTS_CSV)


def best_weights_on_disk(run_dir: Path | None) -> dict[str, torch.Tensor]:
    """A resumed run's best weights so far (empty for a fresh run)."""
    if run_dir is None or not (run_dir / BEST).is_file():
        return {}
    saved = torch.load(run_dir / BEST, map_location="cpu", weights_only=True)
    return dict(saved["model"])
