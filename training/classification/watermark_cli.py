"""`python -m training watermark {keygen,verify}`: make a watermark key; check a suspect model."""

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.classification.watermark import generate_key, read_key
from training.classification.watermark_verify import (
    DEFAULT_ALPHA,
    format_check,
    verify_watermark,
)
from training.core.config import ConfigError

logger = logging.getLogger(__name__)

# grep's convention, so scripts can branch: 0 present, 1 not shown; 2 is a usage or data error.
NOT_SHOWN = 1


def watermark_command(args: argparse.Namespace) -> int:
    """Run the chosen `watermark` action."""
    actions: dict[str, Callable[[argparse.Namespace], int]] = {
        "keygen": _keygen,
        "verify": _verify,
    }
    return actions[args.action](args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"watermark": watermark_command}


def add_commands(commands: "argparse._SubParsersAction[Any]") -> None:
    """Register `watermark` and its actions with training's parser."""
    watermark = commands.add_parser("watermark", help="ownership watermark: keygen, verify")
    actions = watermark.add_subparsers(dest="action", required=True)
    keygen = actions.add_parser("keygen", help="write a new secret watermark key (mode 0600)")
    keygen.add_argument("--out", type=Path, required=True, help="key file; never overwritten")
    verify = actions.add_parser(
        "verify",
        help="does a model answer the key's triggers above chance? (exit 0 yes, 1 no)",
    )
    add = verify.add_argument
    add("--model", type=Path, required=True, help="models/<name>: the suspect model folder")
    add("--key", type=Path, required=True, help="the watermark key file")
    add("--count", type=int, help="triggers to show (default: the card's for this key, or 100)")
    add("--alpha", type=float, default=DEFAULT_ALPHA, help="p-value threshold (default 1e-6)")
    add("--workers", type=int, default=0, help="DataLoader worker processes")
    add("--json", help="also write the finding as JSON to this file ('-': standard output)")


def _keygen(args: argparse.Namespace) -> int:
    key = generate_key(args.out)
    logger.info("wrote watermark key %s to %s (keep it secret)", key.key_id, args.out)
    return 0


def _verify(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise ConfigError("--count must be at least 1")
    if not 0 < args.alpha < 1:
        raise ConfigError("--alpha must be in (0, 1)")
    check = verify_watermark(
        args.model, read_key(args.key), triggers=args.count, alpha=args.alpha, workers=args.workers
    )
    payload = json.dumps(check.to_dict(), indent=2) + "\n"
    if args.json == "-":
        sys.stdout.write(payload)
    else:
        print(format_check(check))
        if args.json is not None:
            Path(args.json).write_text(payload)
    return 0 if check.present else NOT_SHOWN
