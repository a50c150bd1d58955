"""The gallery commands of `python -m training`: `gallery build` and `evaluate-gallery`."""

import argparse
from collections.abc import Callable
from typing import Any

from training.galleries import build, evaluate

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "gallery": build.build_gallery,
    "evaluate-gallery": evaluate.evaluate_gallery,
}


def add_commands(commands: "argparse._SubParsersAction[Any]") -> None:
    """Register the subcommands with training's parser."""
    gallery = commands.add_parser("gallery", help="fill a reference gallery from a folder")
    actions = gallery.add_subparsers(dest="action", required=True)
    build.add_arguments(actions.add_parser("build", help="one folder per product"))
    evaluate.add_arguments(
        commands.add_parser("evaluate-gallery", help="few-shot recognition and unknown rates")
    )
