"""The in-memory index, the batched search hook, perceptual hashes and the few-shot measure."""

from dataclasses import replace
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.galleries.index import GalleryIndex, Hit
from app.galleries.phash import hamming_distances, perceptual_hash
from app.galleries.records import stack_columns
from app.runtime.inference import ClassifyInput, make_classify_runner
from app.runtime.loader import load_model
from bench.match_floor import (
    FloorRound,
    best_served_ratio,
    describe_floor,
    extra_ms,
    measure_floor,
)
from tests.galleries.helpers import EMBEDDER, gallery_snapshot
from tests.images import encode, photo
from training.galleries.fewshot import FewShotPlan, QuerySet, choose_threshold, run_draws

DISTANCE = 9  # the default VISION_GALLERY_DUPLICATE_DISTANCE


def test_search_ranks_products_by_their_best_reference() -> None:
    index = GalleryIndex(
        gallery_snapshot([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7]], ["a", "a", "b", "c"])
    )
    query = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05]]), dim=1)
    [hits] = index.search(query, top_k=2)
    assert [(h.product_id, h.reference_id) for h in hits] == [("a", "r0"), ("c", "r3")]
    assert hits[0].similarity == pytest.approx(1 / np.hypot(1, 0.05), abs=1e-6)
    [every] = index.search(torch.tensor([[0.0, 1.0]]), top_k=10)
    assert [h.product_id for h in every] == ["b", "c", "a"]  # each product once
    assert index.searcher(3) is index.searcher(3)  # one object: concurrent queries group


def test_search_scores_equal_a_row_by_row_product_on_column_major_stacks() -> None:
    generator = np.random.default_rng(0)
    rows = generator.normal(size=(300, 64)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    stacked = stack_columns(rows[:120], rows[120:250], rows[250:])
    assert stacked.flags.f_contiguous and stacked.dtype == np.float32
    np.testing.assert_array_equal(stacked, rows)
    products = [f"p{i % 60}" for i in range(300)]
    index = GalleryIndex(replace(gallery_snapshot(rows, products), embeddings=stacked))
    queries = torch.from_numpy(rows[[7, 150, 299]] + 0.01)
    expected = queries.numpy() @ rows.T
    for query_scores, hits in zip(expected, index.search(queries, top_k=3), strict=True):
        best = int(np.argmax(query_scores))
        assert hits[0].reference_id == f"r{best}"
        assert hits[0].similarity == pytest.approx(float(query_scores[best]), abs=1e-5)


def test_concurrent_matches_share_one_search_call(embedder_store: Path) -> None:
    loaded = load_model(embedder_store / EMBEDDER, torch.device("cpu"))
    calls: list[int] = []

    def search(embeddings: torch.Tensor) -> list[int]:
        calls.append(len(embeddings))
        return list(range(len(embeddings)))

    run = make_classify_runner(loaded)
    pixels = torch.zeros((3, 32, 32), dtype=torch.uint8)
    items = [
        ClassifyInput(pixels, 1, search),
        ClassifyInput(pixels, 1),
        ClassifyInput(pixels, 1, search),
    ]
    outputs = run(items)
    assert calls == [2]
    assert [o.found for o in outputs] == [0, None, 1]


def test_perceptual_hash_survives_copies_and_tells_photos_apart() -> None:
    cat, coffee, rocket = photo("chelsea"), photo("coffee"), photo("rocket")
    original = perceptual_hash(cat)
    half = cat.resize((cat.width // 2, cat.height // 2))
    copies = [
        Image.open(BytesIO(encode(cat, quality=60))),
        half,
        cat.crop((5, 5, cat.width - 5, cat.height - 5)),
    ]
    stored = np.array([perceptual_hash(c) for c in copies], dtype=np.uint64)
    assert hamming_distances(original, stored).max() <= DISTANCE
    others = np.array([perceptual_hash(coffee), perceptual_hash(rocket)], dtype=np.uint64)
    assert hamming_distances(original, others).min() > DISTANCE
    index = GalleryIndex(gallery_snapshot([[1.0, 0.0]], ["cat"]))
    assert index.duplicate_of(int(stored[0]), DISTANCE) is None  # its stored hash is 0


def test_few_shot_measure_on_separable_products() -> None:
    """Three tight clusters are products; a fourth direction plays products not in the gallery."""
    rng = np.random.default_rng(0)
    centres = torch.eye(4)

    def cluster(centre: int, count: int) -> torch.Tensor:
        points = centres[centre] + 0.05 * torch.from_numpy(rng.standard_normal((count, 4))).float()
        return torch.nn.functional.normalize(points, dim=1)

    known = QuerySet(
        embeddings=torch.cat([cluster(i, 40) for i in range(3)]),
        products=torch.arange(3).repeat_interleave(40),
    )
    unknown = QuerySet(embeddings=cluster(3, 400), products=torch.full((400,), -1))
    [result] = run_draws(known, unknown, FewShotPlan(references=5, draws=1))
    assert result.top1 == 1.0 and result.unknown_rate >= 0.8 and result.match_rate == 1.0
    assert choose_threshold(torch.tensor([0.1, 0.2, 0.3, 0.4]), 0.75) == pytest.approx(
        0.3, abs=1e-5
    )


def test_the_match_floor_times_both_pipelines_and_searches_each_batch(
    embedder_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    searched: list[int] = []
    search = GalleryIndex.search

    def counted(index: GalleryIndex, queries: torch.Tensor, top_k: int) -> list[list[Hit]]:
        searched.append(len(queries))
        return search(index, queries, top_k)

    monkeypatch.setattr(GalleryIndex, "search", counted)
    gallery = gallery_snapshot([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], ["a", "b", "c"])
    photos = [encode(photo("chelsea")), encode(photo("coffee"))]
    threads = torch.get_num_threads()

    rounds = measure_floor(
        embedder_store / EMBEDDER, gallery, photos, rounds=2, seconds=0.05, batch_size=2
    )

    assert len(rounds) == 2
    assert all(round_.classify_ms > 0 and round_.match_ms > 0 for round_ in rounds)
    assert searched and set(searched) == {2}  # the match pipeline searches each whole batch
    assert torch.get_num_threads() == threads  # the caller's thread count is restored
    assert "match / classify median" in describe_floor(rounds)


def test_the_best_served_ratio_charges_match_only_its_extra_work() -> None:
    rounds = [
        FloorRound(classify_ms=10.0, match_ms=12.0),
        FloorRound(classify_ms=11.0, match_ms=14.0),
    ]
    assert extra_ms(rounds) == pytest.approx(2.5)
    # Two cores at 100 images/s: classify costs 20 ms a served image, match 22.5 at least.
    assert best_served_ratio(rounds, 100.0, 2) == pytest.approx(20 / 22.5)
