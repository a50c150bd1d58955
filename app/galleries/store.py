"""Which gallery store a service uses: PostgreSQL when VISION_GALLERY_URL is set, else SQLite."""

from pathlib import Path

from app.galleries.sql import SqlGalleryStore


def open_store(directory: Path, url: str | None) -> SqlGalleryStore:
    """The shared PostgreSQL store at `url`, or the embedded one under `directory`."""
    if url:
        from app.galleries.postgres import PostgresGalleryStore  # psycopg only when asked for

        return PostgresGalleryStore(url)
    from app.galleries.sqlite import SqliteGalleryStore

    return SqliteGalleryStore(directory)
