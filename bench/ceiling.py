"""The in-process ceiling: decode, preprocess and run the model on the same photos, no HTTP.

Measured for each (processes x threads, batch size) layout, since on a small CPU the best layout
is not the default one (e.g. two single-threaded processes beat one two-threaded process).
"""

import itertools
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import torch

from app.imaging import ImageLimits, decode_image
from app.runtime.detection import DetectInput, make_detect_runner
from app.runtime.inference import ClassifyInput, make_classify_runner
from app.runtime.loader import LoadedModel, load_model
from app.runtime.optimize import optimize_for_cpu
from app.runtime.preprocessing import draft_size, preprocess_image
from app.runtime.segmentation import SegmentInput, make_segment_runner
from app.services.segmentation import mask_encoder

IMAGE_LIMITS = ImageLimits(max_bytes=50 * 1024 * 1024, max_pixels=100_000_000, min_side=1)


@dataclass(frozen=True)
class Layout:
    """How the work is spread: processes, intra-op threads each, images per forward pass."""

    processes: int
    threads: int
    batch_size: int

    def __str__(self) -> str:
        return f"{self.processes} proc x {self.threads} thr, batch {self.batch_size}"


@dataclass(frozen=True, kw_only=True)
class CeilingPoint:
    """Throughput of the whole pipeline in one layout, and the CPU time it took per image."""

    layout: Layout
    images_per_s: float
    cpu_ms_per_image: float


def measure_ceiling(
    model_dir: Path, photos: list[bytes], layouts: list[Layout], duration_s: float
) -> list[CeilingPoint]:
    """Images/s of decode -> preprocess -> batched forward -> top-5, per layout."""
    return [_measure(model_dir, photos, layout, duration_s) for layout in layouts]


def _measure(
    model_dir: Path, photos: list[bytes], layout: Layout, duration_s: float
) -> CeilingPoint:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(layout.processes)
    results: Queue[tuple[int, float, float]] = context.Queue()
    workers = [
        context.Process(
            target=_worker,
            args=(_Job(model_dir, photos, layout, duration_s, offset), barrier, results),
        )
        for offset in range(layout.processes)
    ]
    for worker in workers:
        worker.start()
    counts = [results.get(timeout=duration_s + 120) for _ in workers]
    for worker in workers:
        worker.join()
    images_per_s = sum(images / seconds for images, seconds, _ in counts)
    cpu_ms = 1000 * sum(cpu for _, _, cpu in counts) / sum(images for images, _, _ in counts)
    return CeilingPoint(layout=layout, images_per_s=images_per_s, cpu_ms_per_image=cpu_ms)


@dataclass(frozen=True)
class _Job:
    model_dir: Path
    photos: list[bytes]
    layout: Layout
    duration_s: float
    offset: int


def _worker(job: _Job, barrier: Barrier, results: "Queue[tuple[int, float, float]]") -> None:
    torch.set_num_threads(job.layout.threads)
    # The service's own loading path, CPU optimisation included, so the ceiling is its ceiling.
    model = optimize_for_cpu(load_model(job.model_dir, torch.device("cpu")))
    run_batch = pipeline(model)
    source = itertools.cycle(job.photos[job.offset :] + job.photos[: job.offset])
    batch_size = job.layout.batch_size
    for _ in range(3):
        run_batch([next(source) for _ in range(batch_size)])  # warm-up at this shape
    barrier.wait()
    images, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < job.duration_s:
        run_batch([next(source) for _ in range(batch_size)])
        images += batch_size
    # process_time counts every thread of the process (intra-op threads included).
    results.put((images, time.perf_counter() - started, time.process_time() - cpu_started))


def pipeline(model: LoadedModel) -> Callable[[list[bytes]], object]:
    """Uploads -> answers with the service's own decode, preprocess and batch functions."""
    spec = model.card.input

    def prepare(data: bytes) -> tuple[torch.Tensor, int, int]:
        decoded = decode_image(data, IMAGE_LIMITS, draft_size(spec))
        return preprocess_image(decoded.image, spec), decoded.width, decoded.height

    if model.card.task == "detect":
        detect = make_detect_runner(model)
        threshold = model.card.detection.score_threshold if model.card.detection else 0.5
        return lambda batch: detect([DetectInput(*prepare(data), threshold, 100) for data in batch])
    if model.card.task == "segment":
        segment = make_segment_runner(model)
        # The service also encodes every mask (PNG by default), in the batch: its own encoder.
        encode_mask = mask_encoder("png")
        return lambda batch: segment(
            [SegmentInput(*prepare(data), encode_mask=encode_mask) for data in batch]
        )
    classify = make_classify_runner(model)
    return lambda batch: classify([ClassifyInput(prepare(data)[0], 5) for data in batch])
