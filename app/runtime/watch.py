"""Reload when the model store changes (VISION_MODEL_WATCH_S): a poll of file stats.

Polling, not inotify: the store is often a mounted volume (Kubernetes swaps a symlink, NFS sends
no events). A change is acted on once it has held still for one interval, so a folder being
copied in is not loaded half-written; a reload then compares contents, so touching a file costs
one hash and nothing else.
"""

import contextlib
import logging

import anyio

from app.errors import ModelLoadError
from app.runtime.card import CARD_FILENAME, MODEL_FILENAME
from app.runtime.reload import ModelReloader
from app.runtime.signing import SIGNATURE_FILENAME
from app.runtime.store import ALIASES_FILENAME

logger = logging.getLogger(__name__)

StoreState = frozenset[tuple[str, int, int]]
_WATCHED = (MODEL_FILENAME, CARD_FILENAME, SIGNATURE_FILENAME)


def store_state(reloader: ModelReloader) -> StoreState:
    """(path, size, mtime) of every file that decides what the store serves."""
    model_dir = reloader.policy.model_dir
    paths = [model_dir / ALIASES_FILENAME]
    with contextlib.suppress(OSError):  # the store itself is gone: a reload will say so
        paths += [folder / name for folder in model_dir.iterdir() for name in _WATCHED]
    state = set()
    for path in paths:
        try:
            stat = path.stat()
        except OSError:  # absent (or vanished while listing): its absence is the state
            continue
        state.add((str(path), stat.st_size, stat.st_mtime_ns))
    return frozenset(state)


async def watch_store(reloader: ModelReloader, interval_s: float, seen: StoreState) -> None:
    """Poll the store every `interval_s`; reload once a change from `seen` has settled.

    `seen`: the state taken before the last load, so a change made while it ran is not missed.
    """
    logger.info("watching %s every %.1f s", reloader.policy.model_dir, interval_s)
    settling: StoreState | None = None
    while True:
        await anyio.sleep(interval_s)
        now = await anyio.to_thread.run_sync(store_state, reloader)
        if now == seen or now != settling:
            settling = None if now == seen else now  # changed: wait one more interval
            continue
        seen, settling = now, None
        try:
            report = await anyio.to_thread.run_sync(reloader.reload)
        except ModelLoadError as error:
            logger.error("store changed but nothing was switched: %s", error)
            continue
        changed = [*report.added, *report.replaced, *report.removed]
        logger.info(
            "store changed: %d folder(s) loaded or removed, %d refused",
            len(changed),
            len(report.refused),
        )
