"""`python -m app`: serve with uvicorn using the VISION_* settings."""

import uvicorn

from app.config import Settings
from app.observability import configure_logging


def main() -> None:
    """Run the service until SIGTERM/SIGINT; in-flight requests drain before exit."""
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
    )


if __name__ == "__main__":
    main()
