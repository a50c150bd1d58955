"""The training tasks, by the card's task name: the one place a new task is registered.

`task_for` picks the task of a new run from `--arch` and `--data`; `task_of_run` and
`task_of_model` read it from what a run or an export wrote.
"""

from pathlib import Path

from app.runtime.card import CARD_FILENAME, parse_stored_card
from training.classification.task import TASK as CLASSIFICATION
from training.core.checkpoint import BEST, Checkpoint, load_checkpoint
from training.core.config import ConfigError
from training.core.task import Task
from training.detection.task import TASK as DETECTION

# Tried in order; classification, which claims everything, comes last.
TASKS: dict[str, Task] = {task.name: task for task in (DETECTION, CLASSIFICATION)}


def task_for(arch: str | None, data: str | None) -> Task:
    """The task of a new run: the first whose architectures or data format fit."""
    return next(task for task in TASKS.values() if task.claims(arch, data))


def task_of_checkpoint(checkpoint: Checkpoint) -> Task:
    """A checkpoint's task (classifier checkpoints predate the record and have none)."""
    return TASKS[str(checkpoint.extra.get("task", "classify"))]


def task_of_model(model_dir: Path) -> Task:
    """An exported model's task, from its card.json."""
    card_file = model_dir / CARD_FILENAME
    if not card_file.is_file():
        raise ConfigError(f"{model_dir} has no {CARD_FILENAME}: not an exported model folder")
    task = parse_stored_card(card_file.read_text()).task
    if task not in TASKS:
        raise ConfigError(f"{model_dir} is a {task} model; training has no {task} task")
    return TASKS[task]


def export_run(
    run_dir: Path,
    store: Path | None = None,
    *,
    name: str | None = None,
    version: str | None = None,
) -> Path:
    """Export a finished run of any task, from its best.pt and metrics.json; return the folder.

    Exporting at the end of `train` and exporting the folder later give the same archive.
    """
    task = task_of_checkpoint(load_checkpoint(run_dir / BEST))
    return task.export_run(run_dir, store, name=name, version=version)
