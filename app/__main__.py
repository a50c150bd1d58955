"""`python -m app`: serve with uvicorn using the VISION_* settings."""

import os

import uvicorn

from app.config import Settings
from app.observability import configure_logging
from app.runtime.device import plan_processes


def main() -> None:
    """Run the service until SIGTERM/SIGINT; in-flight requests drain before exit."""
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    workers, threads = plan_processes(settings.device, settings.workers, settings.torch_threads)
    # Worker processes build their Settings from the environment: hand them the resolved plan.
    os.environ["VISION_WORKERS"], os.environ["VISION_TORCH_THREADS"] = str(workers), str(threads)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
    )


if __name__ == "__main__":
    main()
