"""`python -m app`: serve with the VISION_* settings; `tune`: tune again; `openapi`: the spec;
`keys`: manage the API key file."""

import argparse
import logging
import sys

from app.config import Settings
from app.main import load_registry, plan_runtime
from app.observability import configure_logging
from app.openapi import openapi_document
from app.security import cli as keys_cli
from app.server.runner import serve

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM/SIGINT (drain, answer what was accepted, exit 0), or re-tune."""
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["keys"]:  # its own sub-commands and options
        sys.exit(keys_cli.main(arguments[1:]))
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve", "tune", "openapi"],
        default="serve",
        help="tune: measure every model in the store again and write its tuning profile; "
        "openapi: print the OpenAPI document (make openapi writes docs/openapi.json); "
        "keys: `python -m app keys --help`",
    )
    command = parser.parse_args(arguments).command
    settings = Settings()
    if command == "openapi":
        sys.stdout.write(openapi_document(settings))
        return
    configure_logging(settings.log_format, settings.log_level)
    sys.exit(tune(settings) if command == "tune" else serve(settings))


def tune(settings: Settings) -> int:
    """Measure every model again and write its profile; the exit status (1: not all written)."""
    if not (settings.optimize_cpu or settings.autotune_batch_size):
        logger.error("nothing to tune: OPTIMIZE_CPU and AUTOTUNE_BATCH_SIZE are both off")
        return 2
    # Profiles are keyed by the thread plan: tune with the settings the service runs with.
    registry = load_registry(settings, plan_runtime(settings), remeasure=True)
    unwritten = [served.name for served in registry.models if served.tuning.profile is None]
    if unwritten:
        logger.error("no profile written for %s (see above)", ", ".join(unwritten))
        return 1
    return 0


if __name__ == "__main__":
    main()
