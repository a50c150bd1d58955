"""What a gallery store holds and hands back: plain records, no storage details."""

import re
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

# DESIGN.md: product ids are 1-128 characters of [A-Za-z0-9._-]; gallery names follow suit.
NAME_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
_NAME = re.compile(NAME_PATTERN)

Embeddings = npt.NDArray[np.float32]


def is_valid_name(name: str) -> bool:
    """Whether `name` may be a gallery name or a product id."""
    return _NAME.fullmatch(name) is not None


@dataclass(frozen=True, kw_only=True, slots=True)
class GalleryLimits:
    """How large one product and one gallery may grow."""

    max_references_per_product: int
    max_products_per_gallery: int


@dataclass(frozen=True, kw_only=True, slots=True)
class NewGallery:
    """A gallery to create, bound to one embedding model's exact archive."""

    name: str
    model: str
    model_sha256: str
    embedding_dim: int
    threshold: float
    threshold_source: str


@dataclass(frozen=True, kw_only=True, slots=True)
class GalleryRecord:
    """A stored gallery; `generation` grows with every change, so replicas see when to reload."""

    name: str
    model: str
    model_sha256: str
    embedding_dim: int
    threshold: float
    threshold_source: str
    created_at: datetime
    generation: int
    pruned_generation: int  # the generation of the last removal
    products: int
    references: int


@dataclass(frozen=True, kw_only=True, slots=True)
class NewReference:
    """One reference photo's embedding, perceptual hash and upload digest."""

    embedding: Embeddings
    phash: int
    image_sha256: str
    filename: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ProductSummary:
    """A product and how many reference photos it has."""

    product_id: str
    references: int


@dataclass(frozen=True, kw_only=True, slots=True)
class GallerySnapshot:
    """Every reference of one gallery generation, row-aligned, as the search index needs them."""

    gallery: GalleryRecord
    reference_ids: tuple[str, ...]
    product_ids: tuple[str, ...]
    # [M, D], L2-normalised rows, column-major: the index multiplies by its transpose, which is
    # then a contiguous [D, M] view (README, Reference galleries: 0.5 ms an image at batch 4).
    embeddings: Embeddings
    phashes: npt.NDArray[np.uint64]  # [M]
    last_seq: int  # the store's sequence number of the last reference read


def extend_snapshot(base: GallerySnapshot, newer: GallerySnapshot) -> GallerySnapshot:
    """`base` plus the references stored after it (`newer`, read with `after_seq`)."""
    return GallerySnapshot(
        gallery=newer.gallery,
        reference_ids=base.reference_ids + newer.reference_ids,
        product_ids=base.product_ids + newer.product_ids,
        embeddings=stack_columns(base.embeddings, newer.embeddings),
        phashes=np.concatenate([base.phashes, newer.phashes]),
        last_seq=newer.last_seq,
    )


def stack_columns(*parts: Embeddings) -> Embeddings:
    """A new float32 array of the rows of `parts`, in order, column-major (as snapshots hold
    them)."""
    if len(parts) == 1:
        return np.array(parts[0], dtype=np.float32, order="F")
    # The transpose of a column-major array is a row-major view: joining those along their rows
    # copies once, and its transpose is the column-major result.
    transposes = [np.asfortranarray(part, dtype=np.float32).T for part in parts]
    return np.concatenate(transposes, axis=1).T
