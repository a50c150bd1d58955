"""`--data` for segmentation -> checked splits train, val and (when there is one) test."""

from pathlib import Path

import numpy as np

from training.core.datacheck import DatasetError
from training.core.scenes import SceneConfig
from training.segmentation.data import (
    SegmentationSplit,
    is_coco_segmentation,
    is_mask_folder,
    load_coco_segmentation,
    load_mask_folder,
)
from training.segmentation.datacheck import SegmentationReport, check_splits
from training.segmentation.scenes import SCENES_SEG, generate_scene_masks


def is_segmentation_source(source: str) -> bool:
    """Whether `--data` names segmentation data on its own (COCO needs a segmenter --arch)."""
    return source == SCENES_SEG or is_mask_folder(Path(source))


def scene_config(seed: int, scenes: int) -> SceneConfig:
    """builtin:scenes-seg's sizes for `--scenes N`: val and test are 10% and 15% of it."""
    return SceneConfig(
        seed=seed, train=scenes, val=max(8, scenes // 10), test=max(8, scenes * 3 // 20)
    )


def load_splits(
    source: str, *, seed: int, scenes: int, fractions: tuple[float, float], workers: int = 1
) -> dict[str, SegmentationSplit]:
    """The raw splits of `source` (builtin:scenes-seg generated first), unchecked."""
    if source == SCENES_SEG:
        root = generate_scene_masks(scene_config(seed, scenes), workers)
        return load_mask_folder(root)
    root = Path(source)
    if is_mask_folder(root):
        splits = load_mask_folder(root)
    elif is_coco_segmentation(root):
        splits = load_coco_segmentation(root)
    else:
        raise DatasetError(
            f"{source}: not segmentation data (a folder with labels.txt, images/ and masks/, "
            "a COCO folder with annotations/instances_<split>.json, or builtin:scenes-seg)"
        )
    if "all" in splits:
        return split_seeded(splits["all"], seed, fractions)
    if "train" not in splits or "val" not in splits:
        raise DatasetError(f"{source}: needs train and val splits (found {sorted(splits)})")
    return splits


def split_seeded(
    everything: SegmentationSplit, seed: int, fractions: tuple[float, float]
) -> dict[str, SegmentationSplit]:
    """train/val/test drawn from one folder with the run's seed (recorded in dataset.json)."""
    order = np.random.default_rng(seed).permutation(len(everything)).tolist()
    val = round(len(order) * fractions[0])
    test = round(len(order) * fractions[1])
    parts = {"val": order[:val], "test": order[val : val + test], "train": order[val + test :]}
    return {name: everything.subset(sorted(rows), name) for name, rows in parts.items() if rows}


def checked_splits(
    source: str,
    *,
    seed: int,
    scenes: int,
    fractions: tuple[float, float],
    workers: int = 1,
) -> tuple[dict[str, SegmentationSplit], SegmentationReport]:
    """The splits with every unusable image left out, and the check's report."""
    splits = load_splits(source, seed=seed, scenes=scenes, fractions=fractions, workers=workers)
    return check_splits(splits, max(1, workers))
