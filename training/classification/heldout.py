"""The split a model was really trained and held out on, re-drawn from its card's recipe.

A folder without split subfolders is split by `train` with a seeded, stratified draw; scoring
"test" on it means re-drawing that split, never scoring the whole folder under the name.
"""

import logging
from pathlib import Path

from app.runtime.card import ModelCard
from training.classification.config import TrainConfig
from training.classification.data import BUILTIN_PREFIX, DataSplits, load_data, load_split
from training.classification.images import LabeledImages
from training.core.datacheck import DatasetError

logger = logging.getLogger(__name__)

_RECIPE_KEYS = ("val_fraction", "test_fraction", "seed", "max_per_class")


def splits_as_trained(card: ModelCard, source: str, workers: int) -> DataSplits:
    """`source` split exactly as the model's training run split it (its card's recipe)."""
    recipe = (card.training or {}).get("recipe")
    if not isinstance(recipe, dict) or not all(key in recipe for key in _RECIPE_KEYS[:3]):
        raise DatasetError(
            f"{card.name}'s card records no training split (it was not trained by `python -m "
            f"training train`), so the held-out part of {source} is unknown; give a folder with "
            "split folders, or score every image with --split all"
        )
    values = {key: recipe[key] for key in _RECIPE_KEYS if key in recipe}
    data, _ = load_data(TrainConfig(data=source, workers=workers, **values))
    return data


def evaluation_split(
    card: ModelCard, source: str, split: str, workers: int
) -> tuple[tuple[str, ...], LabeledImages, str]:
    """(classes, images, what was scored) for `evaluate --split`: a split folder, else the
    split training drew from the same folder."""
    if source.startswith(BUILTIN_PREFIX) or split == "all" or (Path(source) / split).is_dir():
        classes, images = load_split(source, split, workers)
        return classes, images, split
    data = splits_as_trained(card, source, workers)
    chosen = {"train": data.train, "val": data.val, "test": data.test}.get(split)
    if chosen is None:
        raise DatasetError(
            f"{source} has no {split}/ folder and {card.name}'s run drew no {split} split from "
            "it; use --split val (or all)"
        )
    name = f"{split} ({data.split_note})"
    logger.info("%s has no %s/ folder: scoring the split training drew: %s", source, split, name)
    return data.classes, chosen, name
