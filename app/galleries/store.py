"""Which gallery store a service uses: PostgreSQL when VISION_GALLERY_URL is set, else SQLite."""

from pathlib import Path

from app.galleries.postgres import PostgresGalleryStore
from app.galleries.sql import SqlGalleryStore
from app.galleries.sqlite import SqliteGalleryStore


def open_store(directory: Path, url: str | None) -> SqlGalleryStore:
    """The shared PostgreSQL store at `url`, or the embedded one under `directory`."""
    if url:
        return PostgresGalleryStore(url)
    return SqliteGalleryStore(directory)
