"""`python -m app`'s server: one process (WORKERS=1) or a supervisor of WORKERS processes.

Either way every serving process is a `DrainingServer` with the guarded protocol
(app/server/worker.py): the same limits, and the same lossless drain on SIGTERM.
"""

import logging
import resource

from app.config import Settings
from app.server.supervisor import serve_workers
from app.server.worker import serve_one

logger = logging.getLogger(__name__)


def serve(settings: Settings) -> int:
    """Serve until stopped; the process exit status (0 after a complete drain)."""
    raise_open_file_limit()  # before any worker is spawned: they inherit it
    return serve_workers(settings) if settings.workers > 1 else serve_one(settings)


def raise_open_file_limit() -> None:
    """Lift the soft open-file limit to the hard one, so MAX_CONNECTIONS is what binds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        logger.info("open-file limit raised from %d to %d", soft, hard)
