"""What every task's training process holds, and the two things built from it alike.

A task's run (`classification.trainer.Run`, `detection.run.DetectionRun`) extends `TaskRun`
with its data and model; `fit_run` starts the run folder and hands the epoch loop a `FitTask`,
and `run_checkpoint` is what every task's best.pt and last.pt hold.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.runtime.card import InputSpec
from training.core.checkpoint import Checkpoint, TrainState, weights_on_cpu
from training.core.config import RunConfig
from training.core.distributed import DistContext
from training.core.engine import StepSettings, Updater
from training.core.fit import EpochResult, FitTask, fit
from training.core.session import start_run_folder


@dataclass(kw_only=True)
class TaskRun:
    """One training process of any task: its config, ranks, recipe state and run folder."""

    config: RunConfig
    context: DistContext
    spec: InputSpec
    optimization: Updater
    settings: StepSettings
    state: TrainState
    run_dir: Path
    best_weights: dict[str, torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class FitPlan:
    """What the task adds for the loop: the model kept, its labels and its epoch."""

    model: nn.Module  # unwrapped: its weights are the checkpoint's
    labels: tuple[str, ...]
    extra: dict[str, Any]  # the checkpoint's task-specific record (task, weights source, ...)
    score_name: str  # e.g. "val top-1", "val mAP"
    steps_per_epoch: int
    dataset_report: dict[str, Any]  # dataset.json
    summary: str  # the dataset check, logged at the start
    run_epoch: Callable[[int, str], EpochResult]


def fit_run(run: TaskRun, plan: FitPlan) -> None:
    """Start the run folder, train through the shared loop, keep the best weights on `run`."""
    start_run_folder(
        run.run_dir, run.config, plan.dataset_report, plan.summary, run.context.is_main
    )
    task = FitTask(
        model=plan.model,
        state=run.state,
        epochs=run.config.epochs,
        patience=run.config.patience,
        score_name=plan.score_name,
        steps_per_epoch=plan.steps_per_epoch,
        run_dir=run.run_dir,
        is_main=run.context.is_main,
        run_epoch=plan.run_epoch,
        checkpoint=lambda: run_checkpoint(run, plan),
        best_weights=run.best_weights,
    )
    run.best_weights = fit(task)


def run_checkpoint(run: TaskRun, plan: FitPlan) -> Checkpoint:
    """Everything a resumed run needs, as plain tensors and values."""
    return Checkpoint(
        model=weights_on_cpu(plan.model),
        optimizer=run.optimization.optimizer.state_dict(),
        scaler=run.optimization.scaler.state_dict(),
        state=copy.deepcopy(run.state),
        config=run.config.to_dict(),
        arch=run.config.arch,
        labels=plan.labels,
        input_spec=run.spec.model_dump(mode="json"),
        extra=plan.extra,
    )
