"""The embedded gallery store: one SQLite file under VISION_GALLERY_DIR (nothing to run).

Write-ahead logging with full fsync: a crash mid-write leaves the last committed state, never a
half-added product. A connection per call keeps threads apart; opening one costs ~0.1 ms.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from app.galleries.sql import Cursor, SqlGalleryStore

FILENAME = "galleries.sqlite3"
_BUSY_TIMEOUT_S = 30.0  # writers queue behind one another rather than fail


class SqliteGalleryStore(SqlGalleryStore):
    """Galleries in `directory/galleries.sqlite3`."""

    blob_type = "BLOB"
    serial_type = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILENAME
        self.location = str(self.path)
        with closing(self._connect()) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        self.create_schema()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun explicitly below, as each call needs.
        connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        connection.execute("PRAGMA synchronous=FULL")
        return connection

    @contextmanager
    def reading(self) -> Iterator[Cursor]:
        """A deferred transaction: in WAL mode it reads one snapshot, beside writers."""
        with self._transaction("BEGIN") as cursor:
            yield cursor

    @contextmanager
    def writing(self) -> Iterator[Cursor]:
        """BEGIN IMMEDIATE takes the write lock up front: counts checked in it stay true."""
        with self._transaction("BEGIN IMMEDIATE") as cursor:
            yield cursor

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[Cursor]:
        with closing(self._connect()) as connection:
            cursor = connection.cursor()
            cursor.execute(begin)
            try:
                yield cursor
            except BaseException:
                connection.rollback()
                raise
            connection.commit()

    def integrity_problems(self) -> list[str]:
        """SQLite's own integrity check: empty when the file is sound."""
        with closing(self._connect()) as connection:
            rows = connection.execute("PRAGMA integrity_check").fetchall()
        return [row[0] for row in rows if row[0] != "ok"]
