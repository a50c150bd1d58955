"""The gallery store over SQL: one schema and one set of queries for SQLite and PostgreSQL.

Every change is one transaction that also bumps the gallery's `generation`, so a product's
references appear together or not at all, and every replica sees from one cheap query whether
its in-memory copy is stale. Embeddings are float32 bytes: loading 10,000 x 1,280 of them as SQL
arrays would build 12.8 million Python floats; bytes load straight into one numpy matrix.
"""

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

import numpy as np

from app.errors import GalleryConflict, GalleryFull, GalleryNotFound, ProductNotFound
from app.galleries.records import (
    GalleryLimits,
    GalleryRecord,
    GallerySnapshot,
    NewGallery,
    NewReference,
    ProductSummary,
    stack_columns,
)

_GALLERY_COLUMNS = (
    "name, model, model_sha256, embedding_dim, threshold, threshold_source, created_at, "
    "generation, pruned_generation"
)
# Kept in the gallery's row by every change (same transaction): reading a gallery is one row,
# which each match request does (counting 10,000 references took ~2 ms).
_COUNTS = "product_count, reference_count"


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses (sqlite3 and psycopg both fit)."""

    def execute(self, query: Any, params: Sequence[Any] = ..., /) -> Any:
        """Run one statement."""

    def executemany(self, query: Any, params: Sequence[Sequence[Any]], /) -> Any:
        """Run one statement per parameter row."""

    def fetchone(self) -> Any:
        """The next row, or None."""

    def fetchall(self) -> list[Any]:
        """All remaining rows."""


class SqlGalleryStore(ABC):
    """Galleries, products and references in two tables; subclasses supply the connections."""

    blob_type: ClassVar[str]
    serial_type: ClassVar[str]
    placeholder: ClassVar[str] = "?"
    location: str  # where the data lives, for logs and errors (never a password)

    @abstractmethod
    def reading(self) -> AbstractContextManager[Cursor]:
        """A read transaction that sees one consistent state."""

    @abstractmethod
    def writing(self) -> AbstractContextManager[Cursor]:
        """A write transaction; writers to the store run one at a time."""

    def close(self) -> None:  # noqa: B027 - SQLite opens a connection per call; nothing to close
        """Release connections."""

    def create_schema(self) -> None:
        """The tables and index, if missing."""
        with self.writing() as cursor:
            for statement in self._schema():
                cursor.execute(statement)

    def _schema(self) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS galleries (name TEXT PRIMARY KEY, model TEXT NOT NULL, "
            "model_sha256 TEXT NOT NULL, embedding_dim INTEGER NOT NULL, "
            "threshold DOUBLE PRECISION NOT NULL, threshold_source TEXT NOT NULL, "
            "created_at TEXT NOT NULL, generation BIGINT NOT NULL, "
            "pruned_generation BIGINT NOT NULL, "
            "product_count BIGINT NOT NULL, reference_count BIGINT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS gallery_references (seq {self.serial_type}, "
            "gallery TEXT NOT NULL, product_id TEXT NOT NULL, reference_id TEXT NOT NULL UNIQUE, "
            f"embedding {self.blob_type} NOT NULL, phash BIGINT NOT NULL, "
            "image_sha256 TEXT NOT NULL, filename TEXT, created_at TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS gallery_references_product "
            "ON gallery_references (gallery, product_id)",
        ]

    def _sql(self, query: str) -> str:
        return query.replace("?", self.placeholder)

    def create_gallery(self, new: NewGallery) -> tuple[GalleryRecord, bool]:
        """The gallery, created unless it exists with the same model; and whether it was new."""
        with self.writing() as cursor:
            cursor.execute(
                self._sql(
                    f"INSERT INTO galleries ({_GALLERY_COLUMNS}, {_COUNTS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0) ON CONFLICT (name) DO NOTHING"
                ),
                (
                    new.name,
                    new.model,
                    new.model_sha256,
                    new.embedding_dim,
                    new.threshold,
                    new.threshold_source,
                    _now(),
                ),
            )
            created = int(cursor.rowcount) == 1  # type: ignore[attr-defined]
            record = self._gallery(cursor, new.name)
        if (record.model, record.model_sha256) != (new.model, new.model_sha256):
            raise GalleryConflict(
                f"Gallery {new.name!r} exists with model {record.model!r} "
                f"(sha256 {record.model_sha256[:12]}); delete it first to use {new.model!r}.",
                gallery=new.name,
                model=record.model,
                model_sha256=record.model_sha256,
            )
        return record, created

    def gallery(self, name: str) -> GalleryRecord:
        """One gallery, or 404."""
        with self.reading() as cursor:
            return self._gallery(cursor, name)

    def galleries(self) -> list[GalleryRecord]:
        """Every gallery, by name."""
        with self.reading() as cursor:
            cursor.execute(f"SELECT {_GALLERY_COLUMNS}, {_COUNTS} FROM galleries ORDER BY name")
            return [_record(row) for row in cursor.fetchall()]

    def generation(self, name: str) -> int:
        """The gallery's change counter (one indexed lookup: replicas call it on every match)."""
        with self.reading() as cursor:
            cursor.execute(self._sql("SELECT generation FROM galleries WHERE name = ?"), (name,))
            row = cursor.fetchone()
        if row is None:
            raise _not_found(name)
        return int(row[0])

    def products(self, name: str) -> list[ProductSummary]:
        """The gallery's products with their reference counts, by id; 404 for no gallery."""
        with self.reading() as cursor:
            self._gallery(cursor, name)
            cursor.execute(
                self._sql(
                    "SELECT product_id, COUNT(*) FROM gallery_references WHERE gallery = ? "
                    "GROUP BY product_id ORDER BY product_id"
                ),
                (name,),
            )
            return [ProductSummary(product_id=p, references=int(n)) for p, n in cursor.fetchall()]

    def add_references(
        self, name: str, product_id: str, references: list[NewReference], limits: GalleryLimits
    ) -> tuple[list[str], int]:
        """Store every reference of one product in one transaction, within the limits.

        Returns the new reference ids and the product's reference count after the addition.
        """
        with self.writing() as cursor:
            record = self.lock_gallery(cursor, name)
            held = self._check_room(cursor, record, product_id, len(references), limits)
            ids = [uuid.uuid4().hex for _ in references]
            now = _now()
            cursor.executemany(
                self._sql(
                    "INSERT INTO gallery_references (gallery, product_id, reference_id, "
                    "embedding, phash, image_sha256, filename, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                [
                    (name, product_id, ref_id, _to_blob(ref), _signed(ref.phash), *_facts(ref), now)
                    for ref_id, ref in zip(ids, references, strict=True)
                ],
            )
            new_product = 1 if references and not held else 0
            self._bump(cursor, name, products=new_product, references=len(references))
        return ids, held + len(references)

    def lock_gallery(self, cursor: Cursor, name: str) -> GalleryRecord:
        """Hold the gallery row until the transaction ends (404 when there is none)."""
        return self._gallery(cursor, name)

    def _check_room(
        self,
        cursor: Cursor,
        record: GalleryRecord,
        product_id: str,
        adding: int,
        limits: GalleryLimits,
    ) -> int:
        name = record.name
        cursor.execute(
            self._sql(
                "SELECT COUNT(*) FROM gallery_references WHERE gallery = ? AND product_id = ?"
            ),
            (name, product_id),
        )
        held = int(cursor.fetchone()[0])
        if held + adding > limits.max_references_per_product:
            raise GalleryFull(
                f"Product {product_id!r} would have {held + adding} references; the limit is "
                f"{limits.max_references_per_product} (VISION_GALLERY_MAX_REFERENCES_PER_PRODUCT).",
                product_id=product_id,
                references=held,
                limit=limits.max_references_per_product,
            )
        if held or not adding:
            return held
        cursor.execute(
            self._sql(
                "SELECT COUNT(DISTINCT product_id) FROM gallery_references WHERE gallery = ?"
            ),
            (name,),
        )
        products = int(cursor.fetchone()[0])
        if products + 1 > limits.max_products_per_gallery:
            raise GalleryFull(
                f"Gallery {name!r} holds {products} products; the limit is "
                f"{limits.max_products_per_gallery} (VISION_GALLERY_MAX_PRODUCTS).",
                gallery=name,
                products=products,
                limit=limits.max_products_per_gallery,
            )
        return held

    def delete_product(self, name: str, product_id: str) -> int:
        """Remove a product and its references; how many references went. 404 if none."""
        with self.writing() as cursor:
            self.lock_gallery(cursor, name)
            cursor.execute(
                self._sql("DELETE FROM gallery_references WHERE gallery = ? AND product_id = ?"),
                (name, product_id),
            )
            deleted = int(cursor.rowcount)  # type: ignore[attr-defined]
            if deleted == 0:
                raise ProductNotFound(
                    f"Gallery {name!r} has no product {product_id!r}.",
                    gallery=name,
                    product_id=product_id,
                )
            self._bump(cursor, name, products=-1, references=-deleted, pruned=True)
        return deleted

    def delete_gallery(self, name: str) -> None:
        """Remove a gallery and all its references; 404 if there is none."""
        with self.writing() as cursor:
            self.lock_gallery(cursor, name)
            cursor.execute(self._sql("DELETE FROM gallery_references WHERE gallery = ?"), (name,))
            cursor.execute(self._sql("DELETE FROM galleries WHERE name = ?"), (name,))

    def snapshot(self, name: str, after_seq: int = 0) -> GallerySnapshot:
        """The gallery's references stored after `after_seq` (0: all), read with its record in
        one transaction. Adds to one gallery are serialised, so their sequence numbers commit in
        order and a reader that has everything up to `after_seq` misses nothing."""
        with self.reading() as cursor:
            record = self._gallery(cursor, name)
            cursor.execute(
                self._sql(
                    "SELECT seq, reference_id, product_id, embedding, phash "
                    "FROM gallery_references WHERE gallery = ? AND seq > ? ORDER BY seq"
                ),
                (name, after_seq),
            )
            rows = cursor.fetchall()
        embeddings = np.frombuffer(b"".join(bytes(row[3]) for row in rows), dtype="<f4")
        return GallerySnapshot(
            gallery=record,
            reference_ids=tuple(row[1] for row in rows),
            product_ids=tuple(row[2] for row in rows),
            embeddings=stack_columns(embeddings.reshape(len(rows), record.embedding_dim)),
            phashes=np.array([_unsigned(row[4]) for row in rows], dtype=np.uint64),
            last_seq=int(rows[-1][0]) if rows else after_seq,
        )

    def _gallery(self, cursor: Cursor, name: str, lock: str = "") -> GalleryRecord:
        cursor.execute(
            self._sql(f"SELECT {_GALLERY_COLUMNS}, {_COUNTS} FROM galleries WHERE name = ?") + lock,
            (name,),
        )
        row = cursor.fetchone()
        if row is None:
            raise _not_found(name)
        return _record(row)

    def _bump(
        self, cursor: Cursor, name: str, *, products: int, references: int, pruned: bool = False
    ) -> None:
        # pruned_generation marks a removal: readers must reload, not just fetch what is new.
        prune = ", pruned_generation = generation + 1" if pruned else ""
        cursor.execute(
            self._sql(
                "UPDATE galleries SET generation = generation + 1, "
                "product_count = product_count + ?, reference_count = reference_count + ?"
                f"{prune} WHERE name = ?"
            ),
            (products, references, name),
        )


def _record(row: Sequence[Any]) -> GalleryRecord:
    name, model, sha256, dim, threshold, source, created, generation, pruned, products, refs = row
    return GalleryRecord(
        name=name,
        model=model,
        model_sha256=sha256,
        embedding_dim=int(dim),
        threshold=float(threshold),
        threshold_source=source,
        created_at=datetime.fromisoformat(created),
        generation=int(generation),
        pruned_generation=int(pruned),
        products=int(products),
        references=int(refs),
    )


def _not_found(name: str) -> GalleryNotFound:
    return GalleryNotFound(f"No gallery named {name!r}.", gallery=name)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _to_blob(reference: NewReference) -> bytes:
    return np.ascontiguousarray(reference.embedding, dtype="<f4").tobytes()


def _facts(reference: NewReference) -> tuple[str, str | None]:
    return reference.image_sha256, reference.filename


def _signed(phash: int) -> int:
    # 64-bit hashes in a signed BIGINT column: two's complement, and back on reading.
    return phash - (1 << 64) if phash >= 1 << 63 else phash


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value
