"""The in-process ceiling: decode, preprocess and classify the same photos with no HTTP."""

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from app.imaging import ImageLimits, decode_image
from app.runtime.inference import ClassifyInput, make_classify_runner
from app.runtime.loader import load_model
from app.runtime.preprocessing import draft_size, preprocess_image

_LIMITS = ImageLimits(max_bytes=50 * 1024 * 1024, max_pixels=100_000_000, min_side=1)


@dataclass(frozen=True)
class CeilingPoint:
    """Throughput of the whole pipeline at one batch size."""

    batch_size: int
    images_per_s: float


def measure_ceiling(
    model_dir: Path, photos: list[bytes], batch_sizes: list[int], duration_s: float
) -> list[CeilingPoint]:
    """Images/s of decode -> preprocess -> batched forward -> top-5, per batch size."""
    model = load_model(model_dir, torch.device("cpu"))
    run = make_classify_runner(model)
    spec = model.card.input

    def classify(batch: list[bytes]) -> None:
        inputs = []
        for data in batch:
            decoded = decode_image(data, _LIMITS, draft_size(spec))
            inputs.append(ClassifyInput(preprocess_image(decoded.image, spec), 5))
        run(inputs)

    points = []
    for batch_size in batch_sizes:
        source = itertools.cycle(photos)
        classify([next(source) for _ in range(batch_size)])  # warm-up at this shape
        images, started = 0, time.perf_counter()
        while time.perf_counter() - started < duration_s:
            classify([next(source) for _ in range(batch_size)])
            images += batch_size
        points.append(CeilingPoint(batch_size, images / (time.perf_counter() - started)))
    return points
