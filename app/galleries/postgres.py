"""The shared gallery store: PostgreSQL (VISION_GALLERY_URL), so every replica sees one truth.

Vectors are float32 bytes searched in the service, as in the embedded store: it needs no
extension (Debian's PostgreSQL 15 has no pgvector) and gives the same answers on both backends.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import IsolationLevel
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from app.galleries.records import GalleryRecord
from app.galleries.sql import Cursor, SqlGalleryStore

_POOL_SIZE = 4
_CONNECT_TIMEOUT_S = 10.0
_SCHEMA_LOCK = 0x76697369  # any fixed key; "visi"


class PostgresGalleryStore(SqlGalleryStore):
    """Galleries in the database at `url`; the tables are created when missing."""

    blob_type = "BYTEA"
    serial_type = "BIGSERIAL PRIMARY KEY"
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        params = conninfo_to_dict(url)
        self.location = f"postgresql://{params.get('host', '')}:{params.get('port', '')}/" + str(
            params.get("dbname", "")
        )
        # check: a pooled connection is tried before use, so a restarted server costs no request
        # (without it, each connection opened before the restart failed one request with a 500).
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=_POOL_SIZE,
            timeout=_CONNECT_TIMEOUT_S,
            open=False,
            check=ConnectionPool.check_connection,
        )
        self._pool.open(wait=True, timeout=_CONNECT_TIMEOUT_S)
        self.create_schema()

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()

    @contextmanager
    def reading(self) -> Iterator[Cursor]:
        """REPEATABLE READ: all queries of the call see one snapshot."""
        with self._pool.connection() as connection:
            connection.isolation_level = IsolationLevel.REPEATABLE_READ
            with connection.transaction(), connection.cursor() as cursor:
                yield cursor

    @contextmanager
    def writing(self) -> Iterator[Cursor]:
        """READ COMMITTED; writers to one gallery queue on its row lock (lock_gallery)."""
        with self._pool.connection() as connection:
            connection.isolation_level = IsolationLevel.READ_COMMITTED
            with connection.transaction(), connection.cursor() as cursor:
                yield cursor

    def lock_gallery(self, cursor: Cursor, name: str) -> GalleryRecord:
        """SELECT ... FOR UPDATE: adds to one gallery count and insert one at a time."""
        return self._gallery(cursor, name, " FOR UPDATE")

    def create_schema(self) -> None:
        """The tables, created under an advisory lock: replicas starting together do not race."""
        with self.writing() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in self._schema():
                cursor.execute(statement)
