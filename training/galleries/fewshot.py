"""Few-shot recognition with a reference gallery, measured as the service decides.

Per draw: K references of each gallery product go into the gallery; the product's other images
are the known queries; images of products not in the gallery are the unknown queries. Each query
gets the products ranked by their best reference's cosine similarity (exactly the service's
search) and is `match` when the best similarity is at or above the threshold. The threshold is
chosen on one half of the queries (the share of unknown queries answered `unknown` reaches the
target) and measured on the other half, so the reported rates are held out; or it is given (a
card's), and only measured.

With a separate reference pool (photos kept for references, e.g. on other backgrounds), the K
references come from the pool and every known image is a query.
"""

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, kw_only=True, slots=True)
class QuerySet:
    """Embeddings [N, D] (L2-normalised) and product ids [N] (-1: not in any gallery)."""

    embeddings: torch.Tensor
    products: torch.Tensor


@dataclass(frozen=True, kw_only=True, slots=True)
class DrawResult:
    """One draw's figures on the held-out half of the queries."""

    threshold: float
    top1: float
    top5: float
    match_rate: float  # known queries answered match
    correct_match_rate: float  # known queries answered match with the right product
    unknown_rate: float  # unknown queries answered unknown


@dataclass(frozen=True, kw_only=True, slots=True)
class FewShotPlan:
    """How many references, which target, how many draws."""

    references: int
    target_unknown_rate: float = 0.9
    draws: int = 5
    seed: int = 0
    threshold: float | None = None  # given: measured as is instead of chosen per draw


def run_draws(
    known: QuerySet, unknown: QuerySet, plan: FewShotPlan, pool: QuerySet | None = None
) -> list[DrawResult]:
    """Every draw's held-out figures (references from `pool` when given, else from `known`)."""
    return [
        run_draw(known, unknown, plan, np.random.default_rng(plan.seed + draw), pool)
        for draw in range(plan.draws)
    ]


def run_draw(
    known: QuerySet,
    unknown: QuerySet,
    plan: FewShotPlan,
    rng: np.random.Generator,
    pool: QuerySet | None = None,
) -> DrawResult:
    """Draw the gallery, rank every query, choose the threshold on one half, measure the other."""
    gallery, queries = _split_gallery(known, pool, plan.references, rng)
    scores, ranked = _rank(queries.embeddings, gallery.embeddings, gallery.products)
    unknown_best = _rank(unknown.embeddings, gallery.embeddings, gallery.products)[0][:, 0]
    truth = queries.products
    _, test_known = _halves(len(truth), rng)  # the threshold is fitted on unknowns only
    fit_unknown, test_unknown = _halves(len(unknown_best), rng)
    threshold = plan.threshold
    if threshold is None:
        threshold = choose_threshold(unknown_best[fit_unknown], plan.target_unknown_rate)
    test_scores, test_ranked, test_truth = (
        scores[test_known],
        ranked[test_known],
        truth[test_known],
    )
    matched = test_scores[:, 0] >= threshold
    right = test_ranked[:, 0] == test_truth
    return DrawResult(
        threshold=threshold,
        top1=_mean(right),
        top5=_mean((test_ranked[:, :5] == test_truth[:, None]).any(dim=1)),
        match_rate=_mean(matched),
        correct_match_rate=_mean(matched & right),
        unknown_rate=_mean(unknown_best[test_unknown] < threshold),
    )


def choose_threshold(unknown_best: torch.Tensor, target_unknown_rate: float) -> float:
    """The lowest similarity that answers at least `target` of these unknown queries unknown."""
    ordered = unknown_best.sort().values
    position = min(int(np.ceil(target_unknown_rate * len(ordered))), len(ordered) - 1)
    # `unknown` is best < threshold: the threshold sits just above the position-th lowest.
    return float(ordered[position - 1]) + 1e-6 if position > 0 else float(ordered[0])


def _split_gallery(
    known: QuerySet, pool: QuerySet | None, references: int, rng: np.random.Generator
) -> tuple[QuerySet, QuerySet]:
    """The gallery's references and the known queries: K of each product's images and the rest,
    or K of each product's pool images and every known image."""
    if pool is None:
        gallery, queries = _draw_gallery(known.products, references, rng)
        return _subset(known, gallery), _subset(known, queries)
    gallery, _ = _draw_gallery(pool.products, references, rng)
    return _subset(pool, gallery), known


def _subset(images: QuerySet, indices: torch.Tensor) -> QuerySet:
    return QuerySet(embeddings=images.embeddings[indices], products=images.products[indices])


def _draw_gallery(
    products: torch.Tensor, references: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    gallery: list[int] = []
    queries: list[int] = []
    for product in product_ids(products).tolist():
        members = (products == product).nonzero().flatten().numpy()
        chosen = rng.permutation(members)
        gallery.extend(chosen[:references])
        queries.extend(chosen[references:])
    return torch.tensor(gallery), torch.tensor(queries)


def _rank(
    queries: torch.Tensor, references: torch.Tensor, ref_products: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query: products by their best reference's similarity, best first (scores, ids)."""
    similarities = queries @ references.T  # [Q, R]
    ids = product_ids(ref_products)
    per_product = torch.full((len(queries), len(ids)), -2.0)
    column = torch.searchsorted(ids, ref_products)
    per_product.scatter_reduce_(
        1, column.expand(len(queries), -1), similarities, reduce="amax", include_self=True
    )
    scores, order = per_product.sort(dim=1, descending=True)
    return scores, ids[order]


def product_ids(products: torch.Tensor) -> torch.Tensor:
    """The distinct product ids, sorted."""
    ids: torch.Tensor = torch.unique(products)
    return ids


def _halves(count: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.from_numpy(rng.permutation(count))
    return order[: count // 2], order[count // 2 :]


def _mean(flags: torch.Tensor) -> float:
    return float(flags.float().mean()) if len(flags) else float("nan")


def summarise(results: list[DrawResult]) -> dict[str, dict[str, float]]:
    """Median, min and max of every figure over the draws."""
    summary: dict[str, dict[str, float]] = {}
    for field in DrawResult.__dataclass_fields__:
        values = np.array([getattr(result, field) for result in results])
        summary[field] = {
            "median": float(np.median(values)),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    return summary
