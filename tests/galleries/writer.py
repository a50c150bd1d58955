"""A process that adds products to a gallery store until it is killed (the crash test's victim).

`python -m tests.galleries.writer sqlite:DIR|postgresql://... GALLERY`: creates the gallery, then
adds products p0, p1, ... (after any stored) of REFERENCES references each, printing each
product's id once stored.
"""

import sys
from pathlib import Path

import numpy as np

from app.galleries.records import GalleryLimits, NewGallery, NewReference
from app.galleries.sql import SqlGalleryStore
from app.galleries.store import open_store

REFERENCES = 40
DIM = 1280
LIMITS = GalleryLimits(max_references_per_product=REFERENCES, max_products_per_gallery=100_000)


def open_from(location: str) -> SqlGalleryStore:
    """The store a location names: sqlite:DIR or a PostgreSQL URL."""
    if location.startswith("sqlite:"):
        return open_store(Path(location.removeprefix("sqlite:")), None)
    return open_store(Path(), location)


def main(argv: list[str]) -> None:
    """Add products forever."""
    location, gallery = argv
    store = open_from(location)
    store.create_gallery(
        NewGallery(
            name=gallery,
            model="m",
            model_sha256="c" * 64,
            embedding_dim=DIM,
            threshold=0.5,
            threshold_source="test",
        )
    )
    rng = np.random.default_rng(0)
    product = len(store.products(gallery))  # after those a killed writer stored
    while True:
        vectors = rng.standard_normal((REFERENCES, DIM)).astype(np.float32)
        batch = [
            NewReference(embedding=v, phash=i, image_sha256="0" * 64, filename=None)
            for i, v in enumerate(vectors)
        ]
        store.add_references(gallery, f"p{product}", batch, LIMITS)
        sys.stdout.write(f"p{product}\n")
        sys.stdout.flush()
        product += 1


if __name__ == "__main__":
    main(sys.argv[1:])
