"""Training checkpoints: plain tensors, numbers and strings, so `weights_only=True` loads them.

A checkpoint holds everything needed to resume (model, optimizer, scaler, epoch, schedule step,
early-stopping state, history) and to export (architecture, labels, input spec, config).
"""

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.core.config import ConfigError

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
BEST = "best.pt"
LAST = "last.pt"


@dataclass(kw_only=True)
class TrainState:
    """Where a run is: the next epoch to train, the best result so far, the history."""

    epoch: int = 0
    step: int = 0
    best_score: float = float("-inf")
    best_loss: float = float("inf")
    best_epoch: int = -1
    stale_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0

    def record_epoch(
        self, row: dict[str, float], score: float, steps_per_epoch: int, loss: float | None = None
    ) -> bool:
        """Add a finished epoch (its row has `epoch` and `epoch_s`); True when it is the best.

        Best = the highest `score`; a tie goes to the lower `loss` (when the task has one), then
        to the later epoch: on a small validation set top-1 ties often, and the first epoch to
        reach a value is rarely the better model.
        """
        self.history.append(row)
        self.epoch = int(row["epoch"])
        self.step = self.epoch * steps_per_epoch
        self.wall_time_s += row["epoch_s"]
        tie_loss = float("inf") if loss is None else loss
        tied = score == self.best_score
        better = score > self.best_score or (tied and tie_loss < self.best_loss)
        # An exact tie takes the later epoch but is no progress for early stopping.
        self.stale_epochs = 0 if better else self.stale_epochs + 1
        if better or (tied and tie_loss == self.best_loss):
            self.best_score, self.best_loss, self.best_epoch = score, tie_loss, self.epoch - 1
            return True
        return False

    def patience_exhausted(self, patience: int) -> bool:
        """Early stopping: `patience` epochs (0 = never) without a new best."""
        return patience > 0 and self.stale_epochs >= patience

    def to_dict(self) -> dict[str, Any]:
        """Checkpoint form."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "best_score": self.best_score,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "stale_epochs": self.stale_epochs,
            "history": self.history,
            "wall_time_s": self.wall_time_s,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainState":
        """Inverse of to_dict; checkpoints written before the loss tie-break load as well."""
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """The contents of best.pt / last.pt."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scaler: dict[str, Any]
    state: TrainState
    config: dict[str, Any]
    arch: str
    labels: tuple[str, ...]
    input_spec: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def weights_on_cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the module's state dict, safe to keep while training goes on."""
    return {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> None:
    """Write atomically, so an interrupted save never leaves a truncated checkpoint."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": checkpoint.model,
        "optimizer": checkpoint.optimizer,
        "scaler": checkpoint.scaler,
        "state": checkpoint.state.to_dict(),
        "config": checkpoint.config,
        "arch": checkpoint.arch,
        "labels": list(checkpoint.labels),
        "input_spec": checkpoint.input_spec,
        "extra": checkpoint.extra,
    }
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    temporary.replace(path)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint with weights_only=True (no arbitrary code runs while loading)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    payload = read_weights(path)
    if not _is_checkpoint(payload):
        raise ConfigError(f"{path} is not a visionserve training checkpoint")
    return Checkpoint(
        model=payload["model"],
        optimizer=payload["optimizer"],
        scaler=payload["scaler"],
        state=TrainState.from_dict(payload["state"]),
        config=payload["config"],
        arch=payload["arch"],
        labels=tuple(payload["labels"]),
        input_spec=payload["input_spec"],
        extra=payload.get("extra", {}),
    )


def is_checkpoint_file(path: Path) -> bool:
    """Whether `path` holds one of training's checkpoints rather than a bare state dict."""
    return _is_checkpoint(read_weights(path))


def read_weights(path: Path) -> Any:
    """torch.load with weights_only=True; a file it cannot read is a one-line ConfigError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        reason = (str(error).strip().splitlines() or ["unreadable"])[0]
        raise ConfigError(f"{path} is not a weights file torch can load: {reason}") from error


def _is_checkpoint(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT
