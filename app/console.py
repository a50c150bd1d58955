"""`visionserve COMMAND ...`: the console script beside `python -m app` and `python -m training`."""

import importlib
import sys
from collections.abc import Callable

# Serving commands run `python -m app`; the rest are `python -m training`'s, found at run time:
# app/ never imports training/ (the service image ships without it).
SERVING_COMMANDS = ("serve", "tune", "openapi", "keys")
TRAINING_COMMANDS = (
    "train",
    "calibrate",
    "evaluate",
    "check",
    "export",
    "sign",
    "encrypt",
    "keygen",
    "offline-weights",
)

USAGE = f"""usage: visionserve COMMAND [options]

serving (settings from VISION_* variables, README "Settings"):
  serve            serve the model store over HTTP until SIGTERM (`python -m app`)
  tune             measure every model again and rewrite its tuning profile
  openapi          print the OpenAPI document (docs/openapi.json)
  keys             add, list or remove named, scoped API keys (VISION_API_KEYS_FILE)

training (`python -m training COMMAND`; `visionserve COMMAND --help` for options):
  {", ".join(TRAINING_COMMANDS)}
"""


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the serving or training command line; the process exit status."""
    arguments = sys.argv[1:] if argv is None else argv
    if not arguments or arguments[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if arguments else 2
    command, rest = arguments[0], arguments[1:]
    if command in SERVING_COMMANDS:
        return _run_module("app.__main__", [command, *rest])
    if command in TRAINING_COMMANDS:
        return _run_module("training.cli", [command, *rest])
    sys.stderr.write(f"visionserve: unknown command {command!r}\n\n{USAGE}")
    return 2


def _run_module(module: str, argv: list[str]) -> int:
    try:
        entry: Callable[[list[str]], int | None] = importlib.import_module(module).main
    except ModuleNotFoundError as error:
        if error.name != "training":
            raise
        sys.stderr.write(
            "visionserve: training is not installed here (the service image ships app/ only);"
            " use a checkout with `pip install -e '.[train]'`\n"
        )
        return 2
    # `python -m app` and argparse end with SystemExit: it carries the exit status through.
    return entry(argv) or 0
