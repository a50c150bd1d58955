"""Score an exported segmenter folder exactly as the service runs it.

The archive is loaded by the service's loader (hash and card verified); each image goes from
file bytes through `decode_image` and `preprocess_image`, and the service's own batch function
(`make_segment_runner`) turns the logits into class maps at the upright image's size.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from app.imaging import decode_image
from app.runtime.loader import LoadedModel, load_model
from app.runtime.preprocessing import draft_size, preprocess_image
from app.runtime.segmentation import SegmentInput, make_segment_runner
from training.core.datacheck import TRAINING_LIMITS, DatasetError
from training.core.scenes import SceneConfig
from training.segmentation.data import SegmentationSplit, mask_tensor
from training.segmentation.datacheck import check_splits
from training.segmentation.metrics import SegmentationMetrics, SegmentationScorer
from training.segmentation.sources import load_splits

_BATCH = 8


@dataclass(frozen=True, kw_only=True)
class SegmenterEvaluation:
    """An exported segmenter's metrics on one split."""

    model: LoadedModel
    split: str
    metrics: SegmentationMetrics


def evaluate_segmenter(
    model_dir: Path,
    source: str,
    split: str = "test",
    *,
    workers: int = 2,
    progress: bool = True,
) -> SegmenterEvaluation:
    """Load `model_dir` like the service and score it on `source`'s `split` (checked first)."""
    loaded = load_model(model_dir, torch.device("cpu"))
    card = loaded.card
    if card.task != "segment":
        raise ValueError(f"{model_dir} is a {card.task} model, not a segmenter")
    defaults = SceneConfig()
    splits = load_splits(
        source, seed=defaults.seed, scenes=defaults.train, fractions=(0.1, 0.15), workers=workers
    )
    if split not in splits:
        raise DatasetError(f"{source} has no {split!r} split (it has {sorted(splits)})")
    usable, _ = check_splits({split: splits[split]}, workers)
    data = usable[split]
    if data.labels != card.labels:
        raise DatasetError(f"the data's labels {data.labels} are not the model's {card.labels}")
    return SegmenterEvaluation(
        model=loaded, split=split, metrics=score_served(loaded, data, progress=progress)
    )


def score_served(
    loaded: LoadedModel, data: SegmentationSplit, *, progress: bool = True
) -> SegmentationMetrics:
    """Run every image through the service's decode, preprocessing and batch function."""
    run = make_segment_runner(loaded)
    scorer = SegmentationScorer(loaded.card.labels)
    spec = loaded.card.input
    indices = range(len(data))
    for start in tqdm(range(0, len(data), _BATCH), disable=not progress, desc="evaluate"):
        batch = list(indices[start : start + _BATCH])
        inputs = []
        for index in batch:
            decoded = decode_image(
                data.images[index].read_bytes(), TRAINING_LIMITS, draft_size(spec)
            )
            pixels = preprocess_image(decoded.image, spec)
            inputs.append(SegmentInput(pixels, decoded.width, decoded.height))
        for index, segmented in zip(batch, run(inputs), strict=True):
            scorer.update(torch.from_numpy(segmented.class_map), mask_tensor(data.mask(index)))
    return scorer.compute()
