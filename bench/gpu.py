"""The GPU path on a CUDA machine: in-process decode x precision x batch size, then the service.

    python -m bench.gpu [--model imagenet-mobilenet-v2] [--batch-sizes 1 8 32]
                        [--precisions fp32 fp16 bf16] [--concurrency 1 32] [--duration 5]

In process (no HTTP): the bundled photos as JPEG, decoded on the CPU (Pillow with draft scaling,
one thread, as each decode thread of the service does) or on the GPU (nvJPEG, one batched call,
`app.gpu_imaging`), run through the service's own batch function with the model in each
precision it passes the parity check for, at each batch size; images/s, synchronised. Then the
service itself (`python -m app`, VISION_DEVICE=cuda) under each (decode, precision) with a
keep-alive load at each concurrency, one image per request, and the ratio to the best in-process
figure of the same (decode, precision). Classifiers only. Exits 2 where there is no CUDA.
"""

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from app.gpu_imaging import GpuJpegDecoder
from app.imaging import ImageLimits, decode_image
from app.runtime.inference import ClassifiedImage, ClassifyInput, make_classify_runner
from app.runtime.loader import LoadedModel, load_model
from app.runtime.precision import RequestedPrecision, choose_precision
from app.runtime.preprocessing import draft_size, preprocess_image
from bench.loadgen import multipart_request, run_load
from bench.photos import load_photos
from bench.service import LOOPBACK, running_service

ROOT = Path(__file__).resolve().parent.parent
LIMITS = ImageLimits(max_bytes=20 << 20, max_pixels=40_000_000, min_side=8)


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """One in-process configuration."""

    decode: str  # "cpu" | "gpu"
    precision: RequestedPrecision


def main() -> None:
    """Measure, print the tables."""
    args = _parser().parse_args()
    if not torch.cuda.is_available():
        print(
            "bench.gpu needs a CUDA device: torch.cuda.is_available() is False here",
            file=sys.stderr,
        )
        sys.exit(2)
    photos = [data for _, data in load_photos()]
    device = torch.device("cuda")
    loaded = load_model(ROOT / "models" / args.model, device)
    if loaded.card.task != "classify":
        sys.exit(f"bench.gpu measures classifiers; {args.model} is a {loaded.card.task} model")
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, {args.model}")
    best = _in_process(loaded, photos, args)
    _over_http(args, photos, best)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="imagenet-mobilenet-v2")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "bf16"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    return parser


def _in_process(
    loaded: LoadedModel, photos: list[bytes], args: argparse.Namespace
) -> dict[Config, float]:
    best: dict[Config, float] = {}
    print("\nin process      images/s by batch size")
    print("decode precision " + " ".join(f"{size:>9}" for size in args.batch_sizes))
    for precision in args.precisions:
        model, choice = choose_precision(loaded, precision)
        if choice.served != precision:
            print(f"  {precision}: {choice.reason}")
            continue
        run = make_classify_runner(model)
        for decode in ("cpu", "gpu"):
            rates = [
                _rate(model, run, photos, decode=decode, size=size, duration_s=args.duration)
                for size in args.batch_sizes
            ]
            best[Config(decode=decode, precision=precision)] = max(rates)
            print(f"{decode:6} {precision:9} " + " ".join(f"{rate:9.1f}" for rate in rates))
    return best


def _rate(
    model: LoadedModel,
    run: Callable[[list[ClassifyInput]], list[ClassifiedImage]],
    photos: list[bytes],
    *,
    decode: str,
    size: int,
    duration_s: float,
) -> float:
    spec = model.card.input
    gpu = GpuJpegDecoder(LIMITS, model.device)
    source = itertools.cycle(photos)

    def prepare(batch: list[bytes]) -> list[torch.Tensor]:
        if decode == "gpu":
            return [image.pixels for image in gpu.prepare_many(batch, spec) if image is not None]
        images = [decode_image(data, LIMITS, draft_size(spec)).image for data in batch]
        return [preprocess_image(image, spec) for image in images]

    def once() -> int:
        pixels = prepare([next(source) for _ in range(size)])
        run([ClassifyInput(item, 5) for item in pixels])
        return len(pixels)

    for _ in range(3):
        once()  # warm-up: graph specialisation, cuDNN autotuning, nvJPEG buffers
    torch.cuda.synchronize()
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < duration_s:
        images += once()
    torch.cuda.synchronize()
    return images / (time.perf_counter() - started)


def _over_http(args: argparse.Namespace, photos: list[bytes], best: dict[Config, float]) -> None:
    print("\nservice         images/s (p50 ms) by concurrency, ratio to in process")
    for config, ceiling in best.items():
        env = {
            "VISION_DEVICE": "cuda",
            "VISION_CUDA_PRECISION": config.precision,
            "VISION_GPU_DECODE": "on" if config.decode == "gpu" else "off",
            "VISION_DEFAULT_CLASSIFIER": args.model,
            "VISION_ACCESS_LOG": "false",
        }
        log = ROOT / "bench" / "results" / f"gpu-{config.decode}-{config.precision}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cells = []
        with running_service(ROOT, env, log) as service:
            path = f"/classify?model={args.model}"
            payloads = [
                (multipart_request(LOOPBACK, service.port, path, [("p.jpg", data)]), 1)
                for data in photos
            ]
            for concurrency in args.concurrency:
                result = asyncio.run(
                    run_load(LOOPBACK, service.port, payloads, concurrency, args.duration)
                )
                rate = result.images / result.elapsed_s
                latencies = sorted(result.latencies) or [float("nan")]
                p50 = latencies[len(latencies) // 2] * 1000
                cells.append(f"c={concurrency}: {rate:7.1f} ({p50:5.1f}) {rate / ceiling:4.2f}x")
        print(f"{config.decode:6} {config.precision:9} ceiling {ceiling:7.1f}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
