"""A tiny embedding classifier for gallery tests: its embedding is the top-left colour."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from app.galleries.records import GalleryRecord, GallerySnapshot
from app.runtime.card import SimilaritySpec
from tests.conftest import tiny_card
from training.classification.modules import EmbeddingClassifier, NormalizedClassifier
from training.core.export import export_model

EMBEDDER = "tiny-embedder"
PLAIN = "tiny-plain"
THRESHOLD = 0.99


class TopLeftMean(nn.Module):
    """The mean colour of the top-left quadrant, in [0, 255]."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        height, width = pixels.shape[2], pixels.shape[3]
        return pixels[:, :, : height // 2, : width // 2].mean(dim=(2, 3))


def embedder() -> EmbeddingClassifier:
    """Logits = colour; embedding = the colour, L2-normalised."""
    classifier = NormalizedClassifier(
        nn.Sequential(TopLeftMean(), nn.Linear(3, 3)), (0.0,) * 3, (1.0,) * 3
    )
    return EmbeddingClassifier(classifier, "1")


def similarity() -> SimilaritySpec:
    """A threshold for the colour embedding (a test's, not measured)."""
    return SimilaritySpec(
        threshold=THRESHOLD,
        data="fixed for tests",
        references=1,
        top1=1.0,
        match_rate=1.0,
        unknown_rate=1.0,
    )


def export_embedders(store: Path, name: str = EMBEDDER, scale: float = 1.0) -> None:
    """The tiny embedder (and a classifier that cannot embed) into `store`."""
    module = embedder()
    with torch.no_grad():
        module.head.weight.copy_(torch.eye(3) * scale)
    card = tiny_card(
        name, outputs=("logits", "embedding"), embedding_dim=3, similarity=similarity()
    )
    export_model(module, card, store)


def gallery_snapshot(vectors: npt.ArrayLike, products: list[str]) -> GallerySnapshot:
    """A gallery of one reference per row of `vectors` (L2-normalised here), ids r0, r1, ..."""
    rows = torch.from_numpy(np.asarray(vectors, dtype=np.float32))
    matrix = torch.nn.functional.normalize(rows, dim=1).numpy()
    record = GalleryRecord(
        name="g",
        model="m",
        model_sha256="0" * 64,
        embedding_dim=matrix.shape[1],
        threshold=0.5,
        threshold_source="test",
        created_at=datetime.now(UTC),
        generation=1,
        pruned_generation=0,
        products=len(set(products)),
        references=len(products),
    )
    return GallerySnapshot(
        gallery=record,
        reference_ids=tuple(f"r{i}" for i in range(len(products))),
        product_ids=tuple(products),
        embeddings=matrix,
        phashes=np.arange(len(products), dtype=np.uint64),
        last_seq=len(products),
    )
