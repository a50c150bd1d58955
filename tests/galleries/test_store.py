"""Both gallery stores, SQLite and a real PostgreSQL server, behave alike."""

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from app.errors import GalleryConflict, GalleryFull, GalleryNotFound, ProductNotFound
from app.galleries.cache import IndexCache
from app.galleries.records import GalleryLimits, NewGallery, NewReference
from app.galleries.sql import SqlGalleryStore
from app.galleries.sqlite import SqliteGalleryStore

LIMITS = GalleryLimits(max_references_per_product=6, max_products_per_gallery=3)
DIM = 8


def new_gallery(name: str = "shop", sha256: str = "a" * 64) -> NewGallery:
    return NewGallery(
        name=name,
        model="m",
        model_sha256=sha256,
        embedding_dim=DIM,
        threshold=0.7,
        threshold_source="test",
    )


def references(count: int, seed: int = 0) -> list[NewReference]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        NewReference(
            embedding=vector,
            phash=int(rng.integers(0, 2**63)) * 2 + 1,  # odd, and often past 2**63
            image_sha256=f"{i:064x}",
            filename=f"{i}.jpg",
        )
        for i, vector in enumerate(vectors)
    ]


def test_create_is_idempotent_and_refuses_another_model(gallery_store: SqlGalleryStore) -> None:
    record, created = gallery_store.create_gallery(new_gallery())
    again, created_again = gallery_store.create_gallery(new_gallery())
    assert (created, created_again) == (True, False)
    assert again.created_at == record.created_at
    with pytest.raises(GalleryConflict, match="delete it first"):
        gallery_store.create_gallery(new_gallery(sha256="b" * 64))


def test_references_come_back_row_aligned_with_exact_vectors_and_hashes(
    gallery_store: SqlGalleryStore,
) -> None:
    gallery_store.create_gallery(new_gallery())
    red, blue = references(2, seed=1), references(3, seed=2)
    red_ids, held = gallery_store.add_references("shop", "red", red, LIMITS)
    blue_ids, _ = gallery_store.add_references("shop", "blue", blue, LIMITS)
    assert held == 2
    snapshot = gallery_store.snapshot("shop")
    assert snapshot.reference_ids == (*red_ids, *blue_ids)
    assert snapshot.product_ids == ("red",) * 2 + ("blue",) * 3
    np.testing.assert_array_equal(snapshot.embeddings, np.stack([r.embedding for r in red + blue]))
    assert [int(h) for h in snapshot.phashes] == [r.phash for r in red + blue]
    assert snapshot.gallery.generation == 2
    assert gallery_store.generation("shop") == 2
    summary = {p.product_id: p.references for p in gallery_store.products("shop")}
    assert summary == {"blue": 3, "red": 2}


def test_limits_refuse_the_whole_addition(gallery_store: SqlGalleryStore) -> None:
    gallery_store.create_gallery(new_gallery())
    gallery_store.add_references("shop", "a", references(5), LIMITS)
    with pytest.raises(GalleryFull, match="would have 7 references"):
        gallery_store.add_references("shop", "a", references(2), LIMITS)
    gallery_store.add_references("shop", "b", references(1), LIMITS)
    gallery_store.add_references("shop", "c", references(1), LIMITS)
    with pytest.raises(GalleryFull, match="holds 3 products"):
        gallery_store.add_references("shop", "d", references(1), LIMITS)
    gallery_store.add_references("shop", "c", references(1), LIMITS)  # an existing product: fine
    counts = {p.product_id: p.references for p in gallery_store.products("shop")}
    assert counts == {"a": 5, "b": 1, "c": 2}


def test_deletes_and_missing_things(gallery_store: SqlGalleryStore) -> None:
    with pytest.raises(GalleryNotFound):
        gallery_store.add_references("nope", "a", references(1), LIMITS)
    gallery_store.create_gallery(new_gallery())
    gallery_store.add_references("shop", "a", references(2), LIMITS)
    with pytest.raises(ProductNotFound):
        gallery_store.delete_product("shop", "zzz")
    assert gallery_store.delete_product("shop", "a") == 2
    assert gallery_store.snapshot("shop").reference_ids == ()
    gallery_store.delete_gallery("shop")
    with pytest.raises(GalleryNotFound):
        gallery_store.gallery("shop")
    assert gallery_store.galleries() == []


def test_concurrent_adds_respect_the_limits_and_stay_whole(
    gallery_store: SqlGalleryStore,
) -> None:
    """Four writers race for one product (room for two batches of three), then four new
    products race for the two places left."""
    gallery_store.create_gallery(new_gallery())

    def add(product: str, seed: int) -> str:
        try:
            gallery_store.add_references("shop", product, references(3, seed), LIMITS)
        except GalleryFull:
            return "full"
        return "added"

    with ThreadPoolExecutor(4) as pool:
        same = list(pool.map(add, ["same"] * 4, range(4)))
        others = list(pool.map(add, [f"p{i}" for i in range(4)], range(4)))
    counts = {p.product_id: p.references for p in gallery_store.products("shop")}
    assert counts.pop("same") == 6 and same.count("added") == 2
    assert len(counts) == 2 and others.count("added") == 2  # 3 products at most
    assert set(counts.values()) == {3}  # no writer's batch was split
    record = gallery_store.gallery("shop")
    assert (record.products, record.references) == (3, 12)  # the kept counters agree


@pytest.mark.anyio
async def test_replica_copies_fetch_additions_and_reload_after_removals(
    gallery_store: SqlGalleryStore,
) -> None:
    cache = IndexCache(gallery_store)
    gallery_store.create_gallery(new_gallery())
    gallery_store.add_references("shop", "a", references(2, seed=1), LIMITS)
    first = await cache.current(gallery_store.gallery("shop"))
    gallery_store.add_references("shop", "b", references(3, seed=2), LIMITS)
    extended = await cache.current(gallery_store.gallery("shop"))
    whole = gallery_store.snapshot("shop")
    assert extended is not first and extended.snapshot.reference_ids == whole.reference_ids
    np.testing.assert_array_equal(extended.snapshot.embeddings, whole.embeddings)
    for index in (first, extended):  # column-major, searched in place (not copied per index)
        assert index.snapshot.embeddings.flags.f_contiguous
        reference = index.embedding_of(index.snapshot.reference_ids[-1]).numpy()
        assert np.shares_memory(reference, index.snapshot.embeddings)
    assert gallery_store.snapshot("shop", whole.last_seq).reference_ids == ()  # nothing newer
    gallery_store.delete_product("shop", "a")
    gallery_store.add_references("shop", "c", references(1, seed=3), LIMITS)
    reloaded = await cache.current(gallery_store.gallery("shop"))
    assert reloaded.snapshot.product_ids == ("b",) * 3 + ("c",)


def test_sqlite_keeps_a_connection_per_thread_and_reopens_after_close(tmp_path: Path) -> None:
    store = SqliteGalleryStore(tmp_path)
    store.create_gallery(new_gallery())
    opened: list[object] = []
    real_connect = store._connect

    def counting_connect() -> sqlite3.Connection:
        connection = real_connect()
        opened.append(connection)
        return connection

    store._connect = counting_connect  # type: ignore[method-assign]
    for _ in range(5):
        assert store.gallery("shop").name == "shop"
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: store.gallery("shop"), range(20)))
    # This thread kept the connection it opened before counting; each pool thread that ran a
    # read opened one (the pool may run all 20 reads on one thread).
    assert 1 <= len(opened) <= 2
    before_close = len(opened)
    store.close()
    assert store.gallery("shop").name == "shop"  # a closed connection is not reused
    assert len(opened) == before_close + 1


def test_sqlite_connection_survives_a_failed_write(tmp_path: Path) -> None:
    store = SqliteGalleryStore(tmp_path)
    store.create_gallery(new_gallery())
    store.add_references("shop", "red", references(3), LIMITS)
    with pytest.raises(GalleryFull):
        store.add_references("shop", "red", references(4, seed=3), LIMITS)
    # The refused addition was rolled back on this thread's connection, which still works.
    assert [p.references for p in store.products("shop")] == [3]
    store.add_references("shop", "blue", references(1, seed=4), LIMITS)
    assert store.gallery("shop").references == 4
