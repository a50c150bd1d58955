"""Each replica's in-memory copy of its galleries, refreshed when the store's generation moves.

Additions are fetched on their own (a 10,000-reference gallery took 1.6-2.5 s to read whole on
a busy machine); a removal since the copy was made reloads the gallery.
"""

import asyncio

import anyio

from app.galleries.index import GalleryIndex
from app.galleries.records import GalleryRecord, GallerySnapshot, extend_snapshot
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
            index = GalleryIndex(await anyio.to_thread.run_sync(self._refreshed, cached, record))
            self._indexes[record.name] = index
            return index

    def _refreshed(self, cached: GalleryIndex | None, record: GalleryRecord) -> GallerySnapshot:
        """Only what was added since `cached`, unless something was removed (then all of it)."""
        if (
            cached is None
            or cached.snapshot.gallery.created_at != record.created_at
            or record.pruned_generation > cached.generation
        ):
            return self._store.snapshot(record.name)
        newer = self._store.snapshot(record.name, cached.snapshot.last_seq)
        if newer.gallery.pruned_generation > cached.generation:  # removed since `record`
            return self._store.snapshot(record.name)
        return extend_snapshot(cached.snapshot, newer)

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
