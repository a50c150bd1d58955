"""`python -m training evaluate-gallery`: few-shot top-1/top-5 and match/unknown rates.

The model folder is loaded and every image decoded as the service does (training's artifact
path); the products are a data set's classes: the first ones go into the gallery, the last
`--unknown-classes` play products that are not in it (plus any `--unknown` images). With
`--reference-split` the references come from that split (e.g. photos on other backgrounds than
the queries') and every image of `--split` is a query; `--threshold card` measures the card's
recorded threshold instead of choosing one.
"""

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from app.runtime.card import ModelCard, SimilaritySpec
from app.runtime.loader import LoadedModel
from training.classification.artifact import load_classifier, model_outputs
from training.classification.data import load_split
from training.classification.images import LabeledImages
from training.classification.unknowns import load_unknown
from training.core.datacheck import DatasetError
from training.core.export import rewrite_archive
from training.galleries.fewshot import (
    FewShotPlan,
    QuerySet,
    product_ids,
    run_draws,
    summarise,
)

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of evaluate-gallery."""
    add = parser.add_argument
    add("--model", type=Path, required=True, help="models/<name> (a classifier that embeds)")
    add("--data", required=True, help="ImageFolder DIR (a folder per product) or builtin:NAME")
    add("--split", default="test", help="the split folder to draw from (default test)")
    add(
        "--reference-split",
        help="draw the references from this split instead (its products as --split's); "
        "every --split image is then a query",
    )
    add("--references", type=int, default=5, help="reference photos per product")
    add("--unknown-classes", type=int, default=None, help="last N products left out (half)")
    add("--unknown", action="append", default=[], help="more not-in-gallery images: DIR|builtin")
    add("--per-class", type=int, default=200, help="images per product at most (seeded)")
    add("--target-unknown-rate", type=float, default=0.9)
    add(
        "--threshold",
        help="measure this similarity threshold (a number, or `card`: the card's recorded one) "
        "instead of choosing one per draw",
    )
    add("--draws", type=int, default=5, help="independent gallery draws (median and range)")
    add("--json", type=Path, help="also write the figures here")
    add("--write-card", action="store_true", help="record the threshold in the model's card")
    add("--workers", type=int, default=2)
    add("--no-progress", dest="progress", action="store_false")


def evaluate_gallery(args: argparse.Namespace) -> int:
    """Measure, print the figures as JSON, optionally record the threshold in the card."""
    loaded = load_classifier(args.model)
    if not loaded.card.embeds:
        raise DatasetError(f"{args.model} has no embedding output; it cannot match galleries")
    known, unknown, pool, description = _query_sets(loaded, args)
    plan = FewShotPlan(
        references=args.references,
        target_unknown_rate=args.target_unknown_rate,
        draws=args.draws,
        threshold=_given_threshold(loaded.card, args.threshold),
    )
    summary = summarise(run_draws(known, unknown, plan, pool))
    queries = len(known.products)
    if pool is None:
        queries -= args.references * len(product_ids(known.products))
    report = {
        "model": loaded.card.name,
        "sha256": loaded.sha256,
        "data": description,
        "references": args.references,
        "draws": args.draws,
        "reference_split": args.reference_split,
        "threshold_given": plan.threshold,
        "known_queries": queries,
        "unknown_queries": len(unknown.products),
        "figures": summary,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.write_card:
        if plan.threshold is not None:
            raise DatasetError("--write-card records a chosen threshold; drop --threshold")
        _write_card(loaded, args.model.parent, summary, description, args.references)
    return 0


def _given_threshold(card: ModelCard, given: str | None) -> float | None:
    if given is None:
        return None
    if given != "card":
        return float(given)
    if card.similarity is None:
        raise DatasetError(f"{card.name}'s card records no similarity threshold")
    return card.similarity.threshold


def _query_sets(
    loaded: LoadedModel, args: argparse.Namespace
) -> tuple[QuerySet, QuerySet, QuerySet | None, str]:
    classes, images = load_split(args.data, args.split, args.workers)
    images = _per_class(images, args.per_class)
    left_out = args.unknown_classes if args.unknown_classes is not None else len(classes) // 2
    if not 0 < left_out < len(classes):
        raise DatasetError(f"--unknown-classes must leave products on both sides of {classes}")
    targets = torch.tensor(images.targets)
    outputs = _embed(loaded, images, args)
    in_gallery = targets < len(classes) - left_out
    known = QuerySet(embeddings=outputs[in_gallery], products=targets[in_gallery])
    extra = [_embed(loaded, load_unknown(source, args.workers), args) for source in args.unknown]
    unknown_embeddings = torch.cat([outputs[~in_gallery], *extra])
    unknown = QuerySet(
        embeddings=unknown_embeddings, products=torch.full((len(unknown_embeddings),), -1)
    )
    names = ", ".join(classes[len(classes) - left_out :])
    pool = _reference_pool(loaded, args, classes, len(classes) - left_out)
    references = f" (references from {args.reference_split})" if pool is not None else ""
    description = (
        f"{args.data} {args.split}{references}: {len(classes) - left_out} products in the "
        f"gallery, not in it: {names}" + "".join(f" + {source}" for source in args.unknown)
    )
    return known, unknown, pool, description


def _reference_pool(
    loaded: LoadedModel, args: argparse.Namespace, classes: tuple[str, ...], in_gallery: int
) -> QuerySet | None:
    """The gallery products' images of --reference-split, when one is named."""
    if args.reference_split is None:
        return None
    pool_classes, images = load_split(args.data, args.reference_split, args.workers)
    if pool_classes != classes:
        raise DatasetError(f"{args.reference_split} and {args.split} have different products")
    images = _per_class(images, args.per_class)
    images = images.select([i for i, target in enumerate(images.targets) if target < in_gallery])
    return QuerySet(embeddings=_embed(loaded, images, args), products=torch.tensor(images.targets))


def _embed(loaded: LoadedModel, images: LabeledImages, args: argparse.Namespace) -> torch.Tensor:
    # Targets are not used here; the model's own labels need not match the products.
    targets = [0] * len(images)
    outputs = model_outputs(
        loaded, images, targets, batch_size=64, workers=args.workers, progress=args.progress
    )
    assert outputs.embeddings is not None  # checked: the card embeds
    return outputs.embeddings


def _per_class(images: LabeledImages, limit: int) -> LabeledImages:
    rng = np.random.default_rng(0)
    targets = np.array(images.targets)
    chosen = [
        index
        for label in np.unique(targets)
        for index in sorted(rng.permutation(np.flatnonzero(targets == label))[:limit])
    ]
    return images.select(chosen)


def _write_card(
    loaded: LoadedModel,
    store: Path,
    summary: dict[str, dict[str, float]],
    description: str,
    references: int,
) -> None:
    similarity = SimilaritySpec(
        threshold=round(summary["threshold"]["median"], 4),
        data=description,
        references=references,
        top1=summary["top1"]["median"],
        match_rate=summary["match_rate"]["median"],
        unknown_rate=summary["unknown_rate"]["median"],
        note="medians over gallery draws; python -m training evaluate-gallery",
    )
    card = ModelCard.model_validate(loaded.card.model_dump() | {"similarity": similarity})
    path = rewrite_archive(loaded.module, card, store, references=loaded.references)
    logger.info("recorded similarity threshold %.4f in %s", similarity.threshold, path)
