"""The segmentation side of `python -m training train|check|evaluate`."""

import argparse
import json
from typing import Any

from training.core.config import ConfigError
from training.core.scenes import SceneConfig
from training.segmentation.artifact import evaluate_segmenter
from training.segmentation.config import SegmentationTrainConfig
from training.segmentation.datacheck import check_splits, format_report
from training.segmentation.metrics import format_segmentation_metrics
from training.segmentation.sources import load_splits


def add_segmentation_options(
    parser: argparse.ArgumentParser, defaults: SegmentationTrainConfig
) -> None:
    """The `train` options only segmenters have (help shows the segmenter defaults)."""
    group = parser.add_argument_group(
        "segmentation (a mask folder, builtin:scenes-seg, or COCO with a segmenter --arch)"
    )
    add = group.add_argument
    add("--image-size", type=int, help=f"square input side, /32 (default {defaults.image_size})")
    add("--scenes", type=int, help=f"builtin:scenes-seg training scenes ({defaults.scenes})")
    add("--val-fraction", type=float, help=f"unsplit folders ({defaults.val_fraction})")
    add("--test-fraction", type=float, help=f"unsplit folders ({defaults.test_fraction})")
    add("--head-channels", type=int, help=f"LR-ASPP width ({defaults.head_channels})")
    add(
        "--trainable-layers",
        type=int,
        help=f"MobileNetV2 blocks trained from the top, 1-19 ({defaults.trainable_layers})",
    )
    add("--max-images", type=int, help="train on the first N images (smoke tests)")


def check_segmentation(args: argparse.Namespace) -> int:
    """`python -m training check` for segmentation data: the report, then a refusal if unusable."""
    defaults = SceneConfig()
    splits = load_splits(
        args.data, seed=0, scenes=defaults.train, fractions=(0.1, 0.15), workers=args.workers
    )
    _, report = check_splits(splits, args.workers)
    print(format_report(report))
    return 0


def evaluate_segmentation(args: argparse.Namespace) -> int:
    """`python -m training evaluate` for a segmenter folder."""
    for flag, given in (("--unknown", args.unknown), ("--report", args.report)):
        if given:
            raise ConfigError(f"{flag} applies to classifiers; {args.model} is a segmenter")
    if args.batch_size is not None:
        raise ConfigError(f"--batch-size applies to classifiers; {args.model} is a segmenter")
    result = evaluate_segmenter(args.model, args.data, args.split, workers=args.workers)
    card = result.model.card
    title = f"{card.name} ({result.model.sha256[:12]}) on {args.data} {result.split}"
    print(format_segmentation_metrics(result.metrics, title))
    if args.json is not None:
        payload: dict[str, Any] = {"model": card.name, "sha256": result.model.sha256}
        args.json.write_text(json.dumps(payload | result.metrics.to_dict(), indent=2) + "\n")
    return 0
