"""Few-shot draws with references from a separate pool, and a given threshold."""

import numpy as np
import torch

from training.galleries.fewshot import FewShotPlan, QuerySet, run_draw


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(vectors, dim=1)


def _products(count: int, per_product: int, noise: float, seed: int) -> QuerySet:
    """`count` products along the first axes, each `per_product` noisy copies."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.eye(8)[:count].repeat_interleave(per_product, dim=0)
    vectors = centres + noise * torch.randn(len(centres), 8, generator=generator)
    return QuerySet(
        embeddings=_unit(vectors), products=torch.arange(count).repeat_interleave(per_product)
    )


def test_references_come_from_the_pool_and_every_known_image_is_a_query() -> None:
    known = _products(3, per_product=4, noise=0.05, seed=1)
    pool = _products(3, per_product=2, noise=0.05, seed=2)
    unknown = QuerySet(embeddings=_unit(torch.eye(8)[5:]), products=torch.full((3,), -1))
    plan = FewShotPlan(references=2, draws=1)
    result = run_draw(known, unknown, plan, np.random.default_rng(0), pool)
    assert result.top1 == 1.0
    # The pool's references sit near the axes: the unknowns (other axes) score about 0.
    assert result.threshold < 0.5


def test_a_given_threshold_is_measured_not_chosen() -> None:
    known = _products(3, per_product=4, noise=0.05, seed=1)
    unknown = QuerySet(embeddings=_unit(torch.eye(8)[5:]), products=torch.full((3,), -1))
    plan = FewShotPlan(references=2, draws=1, threshold=0.999999)
    result = run_draw(known, unknown, plan, np.random.default_rng(0))
    assert result.threshold == 0.999999
    assert result.match_rate == 0.0
    assert result.unknown_rate == 1.0
