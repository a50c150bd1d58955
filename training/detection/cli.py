"""The detection side of `python -m training train|check|evaluate`."""

import argparse
import json
from typing import Any

from training.core.config import ConfigError
from training.detection.artifact import evaluate_detector
from training.detection.config import DetectionTrainConfig
from training.detection.data import resolve_source
from training.detection.datacheck import check_detection_data, format_report, validate_detection
from training.detection.metrics import format_detection_metrics


def add_detection_options(parser: argparse.ArgumentParser, defaults: DetectionTrainConfig) -> None:
    """The `train` options only detectors have (help shows the detector defaults)."""
    group = parser.add_argument_group("detection (COCO data, builtin:scenes or a detector --arch)")
    add = group.add_argument
    add("--image-size", type=int, help=f"longer side (default {defaults.image_size})")
    add("--scenes", type=int, help=f"builtin:scenes training scenes (default {defaults.scenes})")
    add("--score-threshold", type=float, help=f"the card's default ({defaults.score_threshold})")
    add("--fpn-channels", type=int, help=f"feature pyramid width ({defaults.fpn_channels})")
    add(
        "--trainable-layers",
        type=int,
        help=f"backbone stages trained, 1-5 ({defaults.trainable_layers})",
    )
    add("--max-images", type=int, help="train on the first N images (smoke tests)")


def check_detection(args: argparse.Namespace) -> int:
    """`python -m training check` for COCO data: the report, then a refusal if it cannot train."""
    checked = check_detection_data(resolve_source(args.data, workers=args.workers), args.workers)
    print(format_report(checked.report))
    validate_detection(checked.report)
    return 0


def evaluate_detection(args: argparse.Namespace) -> int:
    """`python -m training evaluate` for a detector folder."""
    for flag, given in (("--unknown", args.unknown), ("--report", args.report)):
        if given:
            raise ConfigError(f"{flag} applies to classifiers; {args.model} is a detector")
    if args.batch_size is not None:
        raise ConfigError(f"--batch-size applies to classifiers; {args.model} is a detector")
    result = evaluate_detector(args.model, args.data, args.split, workers=args.workers)
    card = result.model.card
    title = f"{card.name} ({result.model.sha256[:12]}) on {args.data} {result.split}"
    print(format_detection_metrics(result.metrics, title))
    if args.json is not None:
        payload: dict[str, Any] = {"model": card.name, "sha256": result.model.sha256}
        args.json.write_text(json.dumps(payload | result.metrics.to_dict(), indent=2) + "\n")
    return 0
