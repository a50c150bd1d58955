"""The embedded gallery store: one SQLite file under VISION_GALLERY_DIR (nothing to run).

Write-ahead logging with full fsync: a crash mid-write leaves the last committed state, never a
half-added product. Each thread keeps its own connection: opening one per call (connect, the
pragma, reading the schema again) took about as long as the match's forward pass under load
(py-spy, 32 clients), and a connection is not shared between threads.
"""

import sqlite3
import threading
from collections.abc import Callable, Iterator
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
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._epoch = 0  # moved by close(): a thread's older connection is closed, open anew
        with closing(self._connect()) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        self.create_schema()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun explicitly below, as each call needs.
        # check_same_thread=False only so that close() may close every thread's connection;
        # each is used by the thread that opened it.
        connection = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA synchronous=FULL")
        return connection

    def _thread_connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None or getattr(self._local, "epoch", None) != self._epoch:
            connection = self._connect()
            self._local.connection, self._local.epoch = connection, self._epoch
            with self._opened_lock:
                self._opened.append(connection)
        return connection

    def _discard_thread_connection(self) -> None:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            with self._opened_lock:
                if connection in self._opened:
                    self._opened.remove(connection)
            connection.close()

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
        connection = self._thread_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(begin)
        except sqlite3.Error:
            self._discard_thread_connection()  # e.g. the file went away: open afresh next time
            raise
        try:
            yield cursor
        except BaseException:
            self._end(connection.rollback)
            raise
        self._end(connection.commit)

    def _end(self, end_transaction: Callable[[], None]) -> None:
        try:
            end_transaction()
        except sqlite3.Error:
            # A connection left inside a transaction must not serve the thread's next call.
            self._discard_thread_connection()
            raise

    def close(self) -> None:
        """Close every thread's connection (at shutdown, when no call is running)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
            self._epoch += 1
        for connection in opened:
            connection.close()

    def integrity_problems(self) -> list[str]:
        """SQLite's own integrity check: empty when the file is sound."""
        with closing(self._connect()) as connection:
            rows = connection.execute("PRAGMA integrity_check").fetchall()
        return [row[0] for row in rows if row[0] != "ok"]
