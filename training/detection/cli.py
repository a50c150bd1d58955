"""The detection side of `python -m training train|evaluate`, called from training/cli.py."""

import argparse
import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any

from app.runtime.card import CARD_FILENAME, parse_stored_card
from training.checkpoint import load_checkpoint
from training.config import ConfigError
from training.detection.artifact import evaluate_detector
from training.detection.config import DetectionTrainConfig
from training.detection.data import SCENES, is_coco_source, resolve_source
from training.detection.datacheck import check_detection_data, format_report, validate_detection
from training.detection.metrics import format_detection_metrics
from training.detection.models import DETECTOR_ARCHS
from training.detection.trainer import train_detector

# Options a resumed run may change; everything else comes from the checkpoint.
_RESUME_OVERRIDES = ("epochs", "patience", "workers", "device", "threads", "progress", "export")


def add_detection_options(parser: argparse.ArgumentParser) -> None:
    """Options only detectors use, added to the `train` subcommand."""
    group = parser.add_argument_group("detection (COCO data, builtin:scenes or a detector --arch)")
    group.add_argument("--scenes", type=int, help="builtin:scenes training scenes (default 2000)")
    group.add_argument("--score-threshold", type=float, help="the card's default (0.5)")
    group.add_argument("--fpn-channels", type=int, help="feature pyramid width (128)")
    group.add_argument("--trainable-layers", type=int, help="backbone stages trained, 1-5 (3)")
    group.add_argument("--max-images", type=int, help="train on the first N images (smoke tests)")


def is_detection(args: argparse.Namespace) -> bool:
    """Whether a `train` command is about a detector: its arch, its data or its checkpoint."""
    if args.resume is not None:
        return bool(load_checkpoint(args.resume).extra.get("task") == "detect")
    return args.arch in DETECTOR_ARCHS or (bool(args.data) and is_coco_source(args.data))


def check_detection(args: argparse.Namespace) -> int:
    """`python -m training check` for COCO data: the report, then a refusal if it cannot train."""
    checked = check_detection_data(resolve_source(args.data, workers=args.workers), args.workers)
    print(format_report(checked.report))
    validate_detection(checked.report)
    return 0


def train_detection(arguments: list[str]) -> int:
    """Parse the `train` arguments with detection defaults and run (or resume) the recipe."""
    args, _ = _train_parser().parse_known_args(arguments[1:])
    command = "python -m training " + shlex.join(arguments)
    given = {k: v for k, v in vars(args).items() if v is not None and k != "resume"}
    if args.resume is not None:
        checkpoint = load_checkpoint(args.resume)
        overrides = {k: given[k] for k in _RESUME_OVERRIDES if k in given}
        config = DetectionTrainConfig.from_dict(checkpoint.config | overrides)
        train_detector(config, command, checkpoint, args.resume.parent)
        return 0
    if not args.data:
        raise ConfigError(f"--data is required (a COCO folder or {SCENES})")
    fields = {f.name for f in dataclasses.fields(DetectionTrainConfig)}
    config = DetectionTrainConfig(**{k: v for k, v in given.items() if k in fields})
    train_detector(config, command)
    return 0


def _train_parser() -> argparse.ArgumentParser:
    """Only options the user gave count; DetectionTrainConfig supplies the other defaults."""
    parser = argparse.ArgumentParser(prog="python -m training train", add_help=False)
    add = parser.add_argument
    for option in ("--data", "--arch", "--weights", "--name", "--model-version", "--optimizer",
                   "--device", "--amp"):  # fmt: skip
        add(option)
    for option in ("--image-size", "--scenes", "--max-images", "--workers", "--fpn-channels",
                   "--trainable-layers", "--epochs", "--batch-size", "--patience", "--threads",
                   "--seed"):  # fmt: skip
        add(option, type=int)
    for option in ("--score-threshold", "--lr", "--weight-decay", "--momentum",
                   "--warmup-epochs", "--min-lr-ratio", "--clip-grad-norm"):  # fmt: skip
        add(option, type=float)
    for option in ("--resume", "--runs", "--store"):
        add(option, type=Path)
    add("--no-export", dest="export", action="store_const", const=False)
    add("--no-progress", dest="progress", action="store_const", const=False)
    return parser


def is_detector_folder(model_dir: Path) -> bool:
    """Whether models/<name> holds a detector (by its card.json)."""
    card_file = model_dir / CARD_FILENAME
    return card_file.is_file() and parse_stored_card(card_file.read_text()).task == "detect"


def evaluate_detection(args: argparse.Namespace) -> int:
    """`python -m training evaluate` for a detector folder."""
    result = evaluate_detector(args.model, args.data, args.split, workers=args.workers)
    card = result.model.card
    title = f"{card.name} ({result.model.sha256[:12]}) on {args.data} {result.split}"
    print(format_detection_metrics(result.metrics, title))
    if args.json is not None:
        payload: dict[str, Any] = {"model": card.name, "sha256": result.model.sha256}
        args.json.write_text(json.dumps(payload | result.metrics.to_dict(), indent=2) + "\n")
    return 0
