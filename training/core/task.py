"""What a training task hands the core and the command line: `Task`, one per task package.

`training/tasks.py` lists them. The command line picks a task from `--resume`, `--arch` or
`--data`, parses only that task's options, and calls its `train`; `export`, `evaluate` and
`check` reach the task the same way, so adding a task is one package and one entry there.
"""

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from training.core.checkpoint import Checkpoint
from training.core.config import RunConfig

# Options a resumed run may change; everything else comes from the checkpoint.
RESUME_OPTIONS = frozenset(
    {"epochs", "patience", "workers", "device", "threads", "progress", "export", "overwrite"}
)

Trainer = Callable[[Any, str, Checkpoint | None, Path | None], object]
Command = Callable[[argparse.Namespace], int]


class RunExporter(Protocol):
    """Export a finished run folder (its best.pt and metrics.json) into the store."""

    def __call__(
        self, run_dir: Path, store: Path | None, *, name: str | None, version: str | None
    ) -> Path: ...


@dataclass(frozen=True, kw_only=True)
class Task:
    """How one task is trained, exported, evaluated and checked from the command line."""

    name: str  # the card's and the checkpoint's task: classify, detect
    title: str  # in messages: classification, detection
    config: type[RunConfig]
    defaults: RunConfig  # the config with only --data unset, for help texts
    archs: tuple[str, ...]  # architecture names shown in --help
    claims: Callable[[str | None, str | None], bool]  # (--arch, --data): is this run ours?
    add_options: Callable[[argparse.ArgumentParser, Any], None]  # the task's own `train` flags
    train: Trainer
    export_run: RunExporter
    evaluate: Command  # `evaluate --model models/NAME` for a model of this task
    check: Command  # `check --data` for this task's data
    resume_options: frozenset[str] = RESUME_OPTIONS
