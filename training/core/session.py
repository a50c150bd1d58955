"""What every task's run does around its own work: processes, run folder, log, resuming.

A task's trainer builds its data, model and epoch; these are the rest, shared so the tasks
cannot drift apart in how they join torchrun, seed, resume or start their run folder.
"""

import contextlib
import logging
import os
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from app.runtime.device import describe_device
from training.core.checkpoint import Checkpoint, TrainState
from training.core.config import RunConfig
from training.core.distributed import (
    DistContext,
    broadcast_path,
    close_distributed,
    init_distributed,
)
from training.core.recipe import seed_everything
from training.core.report import write_json

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def training_process(config: RunConfig, deterministic: bool = False) -> Iterator[DistContext]:
    """This process in the run: in torchrun's process group (if any), sized and seeded."""
    context = init_distributed(config.device)
    try:
        if config.threads:
            torch.set_num_threads(config.threads)
        seed_everything(config.seed, deterministic)
        yield context
    finally:
        close_distributed()


@contextlib.contextmanager
def run_log(run_dir: Path, is_main: bool) -> Iterator[None]:
    """Rank 0 also writes the log to run_dir/train.log while the run lasts."""
    handler = log_to(run_dir / "train.log") if is_main else None
    try:
        yield
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def parallel(model: nn.Module, context: DistContext) -> nn.Module:
    """What the optimiser steps through: the model in DistributedDataParallel under torchrun."""
    if context.world_size == 1:
        return model
    ids = [context.device] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def open_run_dir(config: RunConfig, context: DistContext, resume_dir: Path | None) -> Path:
    """The resumed run's folder, or a new runs/<name>[-N] made by rank 0; known to every rank."""
    if resume_dir is not None or not context.is_main:
        return broadcast_path(resume_dir)
    return broadcast_path(unique_run_dir(config.runs, config.model_name))


def resume_into(
    resume: Checkpoint | None, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> TrainState:
    """A resumed run's state (optimizer and scaler restored, fresh patience), or a new one."""
    if resume is None:
        return TrainState()
    optimizer.load_state_dict(resume.optimizer)
    scaler.load_state_dict(resume.scaler)
    resume.state.stale_epochs = 0
    return resume.state


def start_run_folder(
    run_dir: Path, config: RunConfig, dataset: dict[str, Any], summary: str, is_main: bool
) -> None:
    """Log the dataset check and write config.json and dataset.json (rank 0)."""
    if not is_main:
        return
    logger.info("%s", summary)
    (run_dir / "config.json").write_text(config.to_json())
    write_json(dataset, run_dir / "dataset.json")


def machine_description(device: torch.device, world_size: int) -> dict[str, Any]:
    """Where the run happened, for the card."""
    return {
        "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": describe_device(device),
        "processes": world_size,
        "platform": platform.platform(),
    }


def log_to(path: Path) -> logging.Handler:
    """Also write this run's log lines to the run folder."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def unique_run_dir(runs: Path, name: str) -> Path:
    """runs/<name>, or runs/<name>-2, -3, ... if taken."""
    candidate = runs / name
    suffix = 2
    while candidate.exists():
        candidate = runs / f"{name}-{suffix}"
        suffix += 1
    candidate.mkdir(parents=True)
    return candidate


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
