"""`python -m app`: serve with uvicorn using the VISION_* settings."""

import sys

from app.config import Settings
from app.observability import configure_logging
from app.server.runner import serve


def main() -> None:
    """Run the service until SIGTERM/SIGINT; drain, answer what was accepted, exit 0."""
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    sys.exit(serve(settings))


if __name__ == "__main__":
    main()
