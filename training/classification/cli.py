"""The classification side of `python -m training train|evaluate|calibrate|check|export`."""

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from app.runtime.card import ModelCard
from training.classification.artifact import evaluate_artifact, load_classifier
from training.classification.calibrate import (
    CalibrationRun,
    calibrate,
    held_out_from_source,
    unknown_from_source,
)
from training.classification.calibration import DecisionGoals
from training.classification.config import (
    DEFAULT_WATERMARK_SHARE,
    DEFAULT_WATERMARK_SIZE,
    TrainConfig,
)
from training.classification.data import load_data
from training.classification.datacheck import format_report
from training.classification.decision_report import (
    evaluate_decisions,
    format_decisions,
    unknown_outputs,
)
from training.classification.metrics import format_metrics
from training.classification.models import build_classifier, last_linear_name
from training.classification.modules import (
    NormalizedClassifier,
    exported_classifier,
    outputs_of,
)
from training.classification.quantize import QuantizeRequest, export_int8
from training.core.config import ConfigError
from training.core.export import export_model, framework_versions

logger = logging.getLogger(__name__)


_NOT_CALIBRATED = (
    "none: exported from pretrained weights without held-out images of its classes, so its "
    "scores are plain softmax and /classify gives no decisions; run `python -m training "
    "calibrate --model models/NAME --data DIR` with held-out images to add them"
)


def evaluate_classifier(args: argparse.Namespace) -> int:
    """`evaluate` for a classifier: metrics, calibration and open-set figures, optional JSON."""
    batch_size = args.batch_size or 256
    result = evaluate_artifact(
        args.model, args.data, args.split, batch_size=batch_size, workers=args.workers
    )
    title = f"{result.model.card.name} ({result.model.sha256[:12]}) on {args.data} {result.split}"
    print(format_metrics(result.metrics, title))
    report_dir = args.report or Path("runs") / "evaluate" / result.model.card.name
    report_dir.mkdir(parents=True, exist_ok=True)
    unknowns = {
        source: unknown_outputs(result.model, source, batch_size, args.workers)
        for source in args.unknown
    }
    decisions = evaluate_decisions(result, unknowns, report_dir)
    print(format_decisions(decisions))
    if args.json is not None:
        payload: dict[str, Any] = {"model": result.model.card.name, "sha256": result.model.sha256}
        payload |= result.metrics.to_dict() | {"decisions": decisions}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def calibrate_classifier(args: argparse.Namespace) -> int:
    """`calibrate`: fit an exported classifier's decisions and rewrite its archive."""
    card = load_classifier(args.model).card
    classes, held_out, train, name = held_out_from_source(card, args.data, args.split, args.workers)
    unknown, unknown_name = unknown_from_source(args.unknown, args.workers)
    run = CalibrationRun(
        model_dir=args.model,
        classes=classes,
        held_out=held_out,
        held_out_name=name,
        train=train,
        unknown=unknown,
        unknown_name=unknown_name,
        goals=DecisionGoals(
            target_tpr=args.target_tpr,
            match_precision=args.match_precision,
            method=None if args.method == "auto" else args.method,
            k=args.k,
        ),
        references=args.references,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=args.progress,
    )
    calibrate(run)
    return 0


def check_classification(args: argparse.Namespace) -> int:
    """`check` for an ImageFolder or built-in set: the report; a refusal when it cannot train."""
    config = TrainConfig(
        data=args.data,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        workers=args.workers,
    )
    _, report = load_data(config)
    print(format_report(report))
    return 0


def export_pretrained(args: argparse.Namespace) -> int:
    """`export --arch --weights`: a torchvision classifier as it comes, uncalibrated."""
    if args.arch is None or args.name is None:
        raise ConfigError("export needs --arch and --name, or --weights runs/NAME/best.pt")
    labels = tuple(args.labels.read_text().split("\n")) if args.labels else ()
    built = build_classifier(args.arch, args.weights, tuple(label for label in labels if label))
    normalization = built.input.normalization
    if normalization is None:
        raise ValueError("a classifier needs mean/std to export")
    classifier = NormalizedClassifier(built.model, normalization.mean, normalization.std)
    module = exported_classifier(classifier, last_linear_name(built.model))
    card = ModelCard(
        name=args.name,
        version=args.model_version or "1.0.0",
        task="classify",
        architecture=args.arch,
        framework=framework_versions(),
        labels=built.labels,
        input=built.input,
        metrics=built.metrics,
        training={"weights": built.weights_source, "calibration": _NOT_CALIBRATED},
        outputs=outputs_of(module),
        embedding_dim=module.embedding_dim,
    )
    directory = export_model(module, card, args.out)
    logger.info("wrote %s", directory)
    return 0


def export_quantized(args: argparse.Namespace) -> int:
    """`export --model models/NAME --quantize int8`: an int8 copy, measured against fp32."""
    if args.model is None or args.quantize is None:
        raise ConfigError("quantizing needs both --model models/NAME and --quantize int8")
    if args.arch is not None or args.labels is not None:
        raise ConfigError("--quantize takes its model from --model, not --arch/--labels")
    request = QuantizeRequest(
        model_dir=args.model,
        data=args.data,
        name=args.name,
        store=args.out,
        calibration_images=args.calibration_images,
        max_accuracy_loss=args.max_accuracy_loss,
        batch_size=args.batch_size,
        workers=args.workers,
    )
    directory = export_int8(request)
    logger.info("wrote %s", directory)
    return 0


# Calibration happens after export, so a resumed classifier may choose it anew.
CALIBRATION_OPTIONS = frozenset({"calibrate", "target_tpr", "match_precision", "unknown"})


def add_classification_options(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """The `train` options only classifiers have (help shows the classifier defaults)."""
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
    add(
        "--watermark-key",
        help="ownership watermark: learn the trigger set of this key file "
        "(`python -m training watermark keygen`)",
    )
    add("--watermark-size", type=int, help=f"triggers (default {DEFAULT_WATERMARK_SIZE})")
    add(
        "--watermark-share",
        type=float,
        help=f"share of each epoch's samples that are triggers ({DEFAULT_WATERMARK_SHARE})",
    )
