"""Each replica's in-memory copy of its galleries, reloaded when the store's generation moves."""

import asyncio

import anyio

from app.galleries.index import GalleryIndex
from app.galleries.records import GalleryRecord
from app.galleries.sql import SqlGalleryStore


class IndexCache:
    """Gallery name -> the index of its latest generation; one reload at a time per gallery."""

    def __init__(self, store: SqlGalleryStore) -> None:
        self._store = store
        self._indexes: dict[str, GalleryIndex] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def current(self, record: GalleryRecord) -> GalleryIndex:
        """The index of `record`'s generation or a later one (another replica may have written)."""
        cached = self._indexes.get(record.name)
        if _fresh(cached, record):
            assert cached is not None
            return cached
        async with self._locks.setdefault(record.name, asyncio.Lock()):
            cached = self._indexes.get(record.name)
            if _fresh(cached, record):  # another request reloaded it while this one waited
                assert cached is not None
                return cached
            snapshot = await anyio.to_thread.run_sync(self._store.snapshot, record.name)
            index = GalleryIndex(snapshot)
            self._indexes[record.name] = index
            return index

    def forget(self, name: str) -> None:
        """Drop a deleted gallery's index."""
        self._indexes.pop(name, None)


def _fresh(cached: GalleryIndex | None, record: GalleryRecord) -> bool:
    # created_at tells a gallery from a deleted one of the same name, whose generations restart.
    return (
        cached is not None
        and cached.snapshot.gallery.created_at == record.created_at
        and cached.generation >= record.generation
    )
