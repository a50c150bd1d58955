"""`python -m training train`: one parser per task, so every flag either works or is refused.

The task comes from `--resume` (the checkpoint's), a detector `--arch`, or COCO `--data`
(detection), else classification. Each task registers its config class, its own options and
its train function in TASKS; adding a task is one entry here and one package.
"""

import argparse
import logging
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed

from training.checkpoint import Checkpoint, load_checkpoint
from training.config import ConfigError, RunConfig, TrainConfig
from training.detection.cli import add_detection_options
from training.detection.config import DetectionTrainConfig
from training.detection.data import is_coco_source
from training.detection.models import DETECTOR_ARCHS
from training.detection.trainer import train_detector
from training.models import model_names
from training.trainer import train

logger = logging.getLogger(__name__)

Trainer = Callable[[Any, str, Checkpoint | None, Path | None], object]

# Options a resumed run may change; everything else comes from the checkpoint.
RESUME_OPTIONS = frozenset(
    {"epochs", "patience", "workers", "device", "threads", "progress", "export", "overwrite"}
)
# Calibration happens after export, so a resumed classifier may choose it anew.
CALIBRATION_OPTIONS = frozenset({"calibrate", "target_tpr", "match_precision", "unknown"})


@dataclass(frozen=True, kw_only=True)
class Task:
    """How one task is trained from the command line."""

    name: str  # the card's task: classify, detect
    title: str  # in messages: classification, detection
    config: type[RunConfig]
    defaults: RunConfig  # the config with only --data unset, for help texts
    add_options: Callable[[argparse.ArgumentParser, Any], None]
    train: Trainer
    resume_options: frozenset[str] = RESUME_OPTIONS


def train_command(arguments: list[str]) -> int:
    """Parse `train`'s arguments (without the word `train`) for their task and run it."""
    task = TASKS[_task_name(arguments)]
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
        epilog="Detection options show with `train --arch fasterrcnn_mobilenet_v2 --help`.",
    )
    _add_run_options(parser, task.defaults)
    task.add_options(parser, task.defaults)
    return parser


def _task_name(arguments: list[str]) -> str:
    probe = argparse.ArgumentParser(add_help=False)
    for flag in ("--data", "--arch", "--resume"):
        probe.add_argument(flag)
    known, _ = probe.parse_known_args(arguments)
    if known.resume is not None:
        return (
            "detect"
            if load_checkpoint(Path(known.resume)).extra.get("task") == "detect"
            else "classify"
        )
    if known.arch in DETECTOR_ARCHS or (known.data and is_coco_source(known.data)):
        return "detect"
    return "classify"


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
            raise ConfigError(f"{first} applies to {owners[0]} training, not {task.title}")
        raise ConfigError(f"unrecognized argument {first} (see `python -m training train --help`)")
    return vars(args)


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _flag(name: str) -> str:
    negative = {"export": "--no-export", "progress": "--no-progress", "calibrate": "--no-calibrate"}
    return negative.get(name, "--" + name.replace("_", "-"))


def _add_run_options(parser: argparse.ArgumentParser, defaults: RunConfig) -> None:
    """Options of every task (RunConfig); help shows the task's own defaults."""

    def add(flag: str, **options: Any) -> None:
        name = flag.removeprefix("--").replace("-", "_")
        default = getattr(defaults, name, None)
        if defaults.scales_recipe and name in ("batch_size", "lr"):
            default = "scaled to the data"
        if default is not None and "action" not in options:
            options["help"] = f"{options.get('help', '')} (default {default})".lstrip()
        parser.add_argument(flag, **options)

    add("--data", help="image folder, COCO folder or builtin:NAME")
    add("--resume", type=Path, help="a run's last.pt; continue it (--epochs may grow)")
    add("--arch", help=f"one of: {', '.join(model_names()[:8])}, ..., {', '.join(DETECTOR_ARCHS)}")
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


def _add_classification_options(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    group = parser.add_argument_group("classification (an ImageFolder or builtin:fashion-mnist)")
    add = group.add_argument
    add("--image-size", type=int, help="input side (default: the data's or the weights')")
    add("--color-mode", choices=["auto", "RGB", "L"], help=f"(default {defaults.color_mode})")
    add("--val-fraction", type=float, help=f"(default {defaults.val_fraction})")
    add("--test-fraction", type=float, help=f"(default {defaults.test_fraction})")
    add("--max-per-class", type=int, help="train on a stratified subset (smoke tests)")
    add("--label-smoothing", type=float, help=f"(default {defaults.label_smoothing})")
    add("--balance", choices=["none", "weights", "sampler"], help="(default none)")
    add("--augment", choices=["auto", "none", "small", "standard"], help="(default auto)")
    add("--random-erasing", type=float, help="probability (default 0)")
    add("--freeze-backbone-epochs", type=int, help="train the head only at first (default 0)")
    add("--channels-last", choices=["auto", "on", "off"], help="(default auto = on CUDA)")
    add("--deterministic", action="store_true", help="deterministic kernels (slower)")
    add("--no-calibrate", dest="calibrate", action="store_false", help="export without decisions")
    add("--target-tpr", type=float, help=f"calibration: known kept ({defaults.target_tpr})")
    add("--match-precision", type=float, help=f"(default {defaults.match_precision})")
    add("--unknown", help="calibration: images of none of the classes (DIR or builtin:NAME)")


def _launcher() -> str:
    """How this process was started, for the card's record of the command."""
    if not torch.distributed.is_torchelastic_launched():
        return "python -m training"
    # torchrun's contract: LOCAL_WORLD_SIZE is --nproc_per_node.
    processes = os.environ.get("LOCAL_WORLD_SIZE", "?")
    return f"torchrun --nproc_per_node={processes} -m training"


TASKS: dict[str, Task] = {
    "classify": Task(
        name="classify",
        title="classification",
        config=TrainConfig,
        defaults=TrainConfig(data=""),
        add_options=_add_classification_options,
        train=train,
        resume_options=RESUME_OPTIONS | CALIBRATION_OPTIONS,
    ),
    "detect": Task(
        name="detect",
        title="detection",
        config=DetectionTrainConfig,
        defaults=DetectionTrainConfig(data=""),
        add_options=add_detection_options,
        train=train_detector,
    ),
}
