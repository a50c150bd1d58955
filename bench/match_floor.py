"""The in-process floor of /match against /classify: the work each must do, without HTTP.

Per image, classify decodes, preprocesses and runs the model in batches; match does all of
that plus what only it needs: the perceptual hash of the decoded image and the exact search of
the gallery's embeddings (the service's own `perceptual_hash` and `GalleryIndex.searcher`, run
in the batch as the service runs them). Both are timed in one thread (CPU time per image), in
alternating rounds. Their difference is match's own extra work per image: with classify served
at C ms of the machine's CPU per image, match can reach at most C / (C + extra) of classify's
images/s, however little serving costs (`best_served_ratio`).
"""

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from app.galleries.index import GalleryIndex
from app.galleries.phash import perceptual_hash
from app.galleries.records import GallerySnapshot
from app.imaging import decode_image
from app.runtime.inference import ClassifyInput, make_classify_runner
from app.runtime.loader import load_model
from app.runtime.optimize import optimize_for_cpu
from app.runtime.preprocessing import draft_size, preprocess_image
from bench.ceiling import IMAGE_LIMITS

_TOP_K = 5


@dataclass(frozen=True, kw_only=True)
class FloorRound:
    """CPU milliseconds per image of each pipeline in one round."""

    classify_ms: float
    match_ms: float

    @property
    def ratio(self) -> float:
        """Images/s of match over classify on the same CPU."""
        return self.classify_ms / self.match_ms


def measure_floor(
    model_dir: Path,
    snapshot: GallerySnapshot,
    photos: list[bytes],
    *,
    rounds: int,
    seconds: float,
    batch_size: int = 4,
) -> list[FloorRound]:
    """Alternate the two pipelines `rounds` times, `seconds` of CPU each, in this thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the service's inference workers runs
    try:
        return _alternate(
            model_dir, snapshot, photos, rounds=rounds, seconds=seconds, batch_size=batch_size
        )
    finally:
        torch.set_num_threads(threads)


def _alternate(
    model_dir: Path,
    snapshot: GallerySnapshot,
    photos: list[bytes],
    *,
    rounds: int,
    seconds: float,
    batch_size: int,
) -> list[FloorRound]:
    model = optimize_for_cpu(load_model(model_dir, torch.device("cpu")))
    spec, run = model.card.input, make_classify_runner(model)
    search = GalleryIndex(snapshot).searcher(_TOP_K)

    def classify(data: bytes) -> ClassifyInput:
        decoded = decode_image(data, IMAGE_LIMITS, draft_size(spec))
        return ClassifyInput(preprocess_image(decoded.image, spec), _TOP_K)

    def match(data: bytes) -> ClassifyInput:
        decoded = decode_image(data, IMAGE_LIMITS, draft_size(spec))
        perceptual_hash(decoded.image)
        return ClassifyInput(preprocess_image(decoded.image, spec), 1, search)

    def timed(prepare: Callable[[bytes], ClassifyInput]) -> float:
        return _cpu_ms_per_image(
            lambda batch: run([prepare(data) for data in batch]), photos, batch_size, seconds
        )

    results = []
    for round_ in range(rounds):
        # Alternate which goes first, so a noisy moment or a warm cache favours neither.
        if round_ % 2 == 0:
            classify_ms, match_ms = timed(classify), timed(match)
        else:
            match_ms, classify_ms = timed(match), timed(classify)
        results.append(FloorRound(classify_ms=classify_ms, match_ms=match_ms))
    return results


def _cpu_ms_per_image(
    run_batch: Callable[[list[bytes]], object], photos: list[bytes], batch_size: int, seconds: float
) -> float:
    source = itertools.cycle(photos)
    for _ in range(3):  # warm-up at this shape
        run_batch([next(source) for _ in range(batch_size)])
    images, started = 0, time.thread_time()
    while time.thread_time() - started < seconds:
        run_batch([next(source) for _ in range(batch_size)])
        images += batch_size
    return 1000 * (time.thread_time() - started) / images


def extra_ms(rounds: list[FloorRound]) -> float:
    """Median CPU milliseconds per image that match needs beyond classify."""
    return statistics.median(round_.match_ms - round_.classify_ms for round_ in rounds)


def best_served_ratio(rounds: list[FloorRound], classify_images_per_s: float, cores: int) -> float:
    """The most match can serve, as a share of classify's images/s, when classify keeps `cores`
    busy at `classify_images_per_s` and match costs only its extra work more per image."""
    classify_ms = 1000 * cores / classify_images_per_s
    return classify_ms / (classify_ms + extra_ms(rounds))


def describe_floor(rounds: list[FloorRound]) -> str:
    """One line: the medians of each pipeline and of the ratio, with its range."""
    ratios = [round_.ratio for round_ in rounds]
    classify = statistics.median(round_.classify_ms for round_ in rounds)
    match = statistics.median(round_.match_ms for round_ in rounds)
    return (
        f"in-process floor (one thread, no HTTP, {len(rounds)} rounds): classify {classify:.1f}, "
        f"match {match:.1f} ms CPU per image (+{extra_ms(rounds):.1f}); match / classify median "
        f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})"
    )
