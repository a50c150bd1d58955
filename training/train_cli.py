"""`python -m training train`: one parser per task, so every flag either works or is refused.

The task comes from `--resume` (the checkpoint's), else from `--arch` and `--data`
(`training.tasks.task_for`). Each task brings its config class, its own options and its train
function (`training.core.task.Task`); adding a task is one package and one entry in
`training/tasks.py`.
"""

import argparse
import logging
import os
import shlex
from pathlib import Path
from typing import Any

import torch.distributed

from training.core.checkpoint import load_checkpoint
from training.core.config import ConfigError
from training.core.task import Task
from training.tasks import TASKS, task_for, task_of_checkpoint

logger = logging.getLogger(__name__)


def train_command(arguments: list[str]) -> int:
    """Parse `train`'s arguments (without the word `train`) for their task and run it."""
    task = _task(arguments)
    given = _parse(task, arguments)
    command = _launcher() + " train " + shlex.join(arguments)
    resume = given.pop("resume", None)
    if resume is None:
        if "data" not in given:
            raise ConfigError("--data is required (an image folder, a COCO folder or builtin:NAME)")
        task.train(task.config(**given), command, None, None)
        return 0
    refused = sorted(set(given) - task.resume_options)
    if refused:
        flags = ", ".join(_flag(name) for name in refused)
        allowed = ", ".join(_flag(name) for name in sorted(task.resume_options))
        raise ConfigError(
            f"{flags}: a resumed run keeps its checkpoint's recipe; it takes {allowed}"
        )
    checkpoint = load_checkpoint(resume)
    config = task.config.from_dict(checkpoint.config | given)
    task.train(config, command, checkpoint, resume.parent)
    return 0


def train_parser(task_name: str = "classify") -> argparse.ArgumentParser:
    """The `train` parser of one task; defaults are left to the task's config class."""
    task = TASKS[task_name]
    parser = argparse.ArgumentParser(
        prog="python -m training train",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
        description=f"Train a {task.title} model and export it to the model store.",
        epilog=_other_tasks(task),
    )
    _add_run_options(parser, task)
    task.add_options(parser, task.defaults)
    return parser


def _task(arguments: list[str]) -> Task:
    probe = argparse.ArgumentParser(add_help=False)
    for flag in ("--data", "--arch", "--resume"):
        probe.add_argument(flag)
    known, _ = probe.parse_known_args(arguments)
    if known.resume is not None:
        return task_of_checkpoint(load_checkpoint(Path(known.resume)))
    return task_for(known.arch, known.data)


def _parse(task: Task, arguments: list[str]) -> dict[str, Any]:
    """The options given, by config field name; a flag of another task or none is an error."""
    parser = train_parser(task.name)
    args, extras = parser.parse_known_args(arguments)
    flags = [item.split("=")[0] for item in extras if item.startswith("-")]
    if extras:
        first = flags[0] if flags else extras[0]
        owners = [
            other.title
            for other in TASKS.values()
            if other is not task and first in _flags(train_parser(other.name))
        ]
        if owners:
            # A flag several tasks share (--scenes) names them all.
            raise ConfigError(
                f"{first} applies to {' and '.join(owners)} training, not {task.title}"
            )
        raise ConfigError(f"unrecognized argument {first} (see `python -m training train --help`)")
    return vars(args)


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _flag(name: str) -> str:
    negative = {"export": "--no-export", "progress": "--no-progress", "calibrate": "--no-calibrate"}
    return negative.get(name, "--" + name.replace("_", "-"))


def _add_run_options(parser: argparse.ArgumentParser, task: Task) -> None:
    """Options of every task (RunConfig); help shows the task's own defaults."""

    def add(flag: str, **options: Any) -> None:
        name = flag.removeprefix("--").replace("-", "_")
        default = getattr(task.defaults, name, None)
        if task.defaults.scales_recipe and name in ("batch_size", "lr"):
            default = "scaled to the data"
        if default is not None and "action" not in options:
            options["help"] = f"{options.get('help', '')} (default {default})".lstrip()
        parser.add_argument(flag, **options)

    add("--data", help="image folder, COCO folder or builtin:NAME")
    add("--resume", type=Path, help="a run's last.pt; continue it (--epochs may grow)")
    add("--arch", help=f"one of: {', '.join(task.archs)}, ...")
    add("--weights", help="imagenet | ENUM_MEMBER | PATH | none")
    add("--name", help="model name in the store (default: from --data)")
    add("--model-version", help="the card's version")
    add("--overwrite", action="store_true", help="replace models/<name> (with a newer version)")
    add("--runs", type=Path, help="parent of run folders")
    add("--store", type=Path, help="the model store to export into")
    add("--no-export", dest="export", action="store_false", help="skip exporting")
    add("--workers", type=int, help="DataLoader worker processes")
    add("--epochs", type=int)
    add("--batch-size", type=int, help="per process")
    add("--optimizer", choices=["adamw", "sgd"])
    add("--lr", type=float, help="peak learning rate")
    add("--weight-decay", type=float)
    add("--momentum", type=float, help="SGD only")
    add("--warmup-epochs", type=float)
    add("--min-lr-ratio", type=float, help="cosine floor")
    add("--clip-grad-norm", type=float, help="0 = off")
    add("--patience", type=int, help="early stop; 0 = off")
    add("--device", help="auto | cpu | cuda | cuda:N")
    add("--amp", choices=["auto", "on", "off"], help="auto = on CUDA")
    add("--threads", type=int, help="torch threads; 0 = default")
    add("--seed", type=int)
    add("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _other_tasks(task: Task) -> str:
    """How to see another task's options (the task follows from --arch)."""
    others = [other for other in TASKS.values() if other is not task]
    return " ".join(
        f"{other.title.capitalize()} options show with `train --arch {other.archs[0]} --help`."
        for other in others
    )


def _launcher() -> str:
    """How this process was started, for the card's record of the command."""
    if not torch.distributed.is_torchelastic_launched():
        return "python -m training"
    # torchrun's contract: LOCAL_WORLD_SIZE is --nproc_per_node.
    processes = os.environ.get("LOCAL_WORLD_SIZE", "?")
    return f"torchrun --nproc_per_node={processes} -m training"
