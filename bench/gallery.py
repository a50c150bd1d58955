"""Benchmark /galleries/{g}/match against /classify on the same model, and adding references.

    python -m bench.gallery [--model imagenet-mobilenet-v2] [--references 10000] [--rounds 5]
                            [--duration 10] [--concurrency 32] [--floor-rounds 4]

A gallery of `--references` references (random unit vectors: the exact search costs the same
whatever they are) is written straight into a fresh embedded store; then one server answers
`--rounds` pairs of load windows, /classify and /match alternating so that a noisy moment hits
both alike. Prints each route's median images/s with its range and the match/classify ratio;
then the add-reference throughput into that gallery (8 photos a request, 4 clients) and the
store's size per 1,000 references. Before the server starts, the in-process floor: the same
two pipelines with no HTTP in one thread (bench/match_floor.py), so match's own extra work per
image, and from it the best ratio any server could reach at the measured classify rate (not
measured for a server on a GPU, where neither applies).
"""

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
from contextlib import closing
from pathlib import Path

import numpy as np
import torch

from app.galleries.records import GalleryLimits, NewGallery, NewReference
from app.galleries.sqlite import FILENAME, SqliteGalleryStore
from app.runtime.device import resolve_device
from app.runtime.loader import load_model
from bench.loadgen import LoadResult, multipart_request, run_load
from bench.match_floor import FloorRound, best_served_ratio, describe_floor, measure_floor
from bench.photos import load_photos
from bench.serve import ROOT, _free_port, _start_server

_REFS_PER_PRODUCT = 5


def main() -> None:
    """Fill, serve, measure, print."""
    args = _parser().parse_args()
    photos = load_photos()
    with tempfile.TemporaryDirectory(prefix="bench-gallery-") as directory:
        store_dir = Path(directory)
        size = _fill(store_dir, args)
        skipped = floor_skipped(args.env, args.floor_rounds)
        floor = skipped if skipped is not None else _floor(store_dir, args, photos)
        port = _free_port()
        args.env = [*args.env, f"VISION_GALLERY_DIR={store_dir}"]
        args.env += ["VISION_GALLERY_MAX_REFERENCES_PER_PRODUCT=10000"]
        server = _start_server(port, args)
        try:
            rates = _paired_rounds(port, args, photos)
            added = _add_rate(port, args, photos)
        finally:
            server.terminate()
            server.wait(60)
    _report(args, rates, added, size, floor)


def _floor(
    store_dir: Path, args: argparse.Namespace, photos: list[tuple[str, bytes]]
) -> list[FloorRound]:
    return measure_floor(
        args.model_dir / args.model,
        SqliteGalleryStore(store_dir).snapshot("bench"),
        [data for _, data in photos],
        rounds=args.floor_rounds,
        seconds=args.floor_s,
    )


def floor_skipped(env: list[str], floor_rounds: int) -> str | None:
    """Why the in-process floor is not measured, or None when it is.

    The floor runs both pipelines on the CPU and its bound assumes the server spends the cores'
    time: neither describes a server on a GPU (which `auto` picks wherever CUDA is present).
    """
    if floor_rounds <= 0:
        return "not measured (--floor-rounds 0)"
    setting = dict(item.split("=", 1) for item in env).get(
        "VISION_DEVICE", os.environ.get("VISION_DEVICE", "auto")
    )
    device = resolve_device(setting)
    if device.type != "cpu":
        return f"not measured: the server runs on {device}; the floor and its bound are for CPU"
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="imagenet-mobilenet-v2")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--references", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5, help="pairs of load windows")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per window")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--env", nargs="*", default=[], help="VISION_*=value for the server")
    parser.add_argument("--floor-rounds", type=int, default=4, help="pairs of in-process runs")
    parser.add_argument("--floor-s", type=float, default=4.0, help="CPU seconds per run")
    return parser


def _fill(directory: Path, args: argparse.Namespace) -> int:
    """The gallery `bench` with `--references` references; the store file's size in bytes."""
    loaded = load_model(args.model_dir / args.model, torch.device("cpu"))
    dim = loaded.card.embedding_dim
    assert dim is not None, f"{args.model} has no embedding output"
    store = SqliteGalleryStore(directory)
    store.create_gallery(
        NewGallery(
            name="bench",
            model=args.model,
            model_sha256=loaded.sha256,
            embedding_dim=dim,
            threshold=0.5,
            threshold_source="bench",
        )
    )
    rng = np.random.default_rng(0)
    limits = GalleryLimits(
        max_references_per_product=_REFS_PER_PRODUCT, max_products_per_gallery=10**6
    )
    for product in range(args.references // _REFS_PER_PRODUCT):
        vectors = rng.standard_normal((_REFS_PER_PRODUCT, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        references = [
            NewReference(
                embedding=v, phash=int(rng.integers(0, 2**63)), image_sha256="0" * 64, filename=None
            )
            for v in vectors
        ]
        store.add_references("bench", f"product-{product}", references, limits)
    with closing(sqlite3.connect(store.path)) as connection:  # all data into the main file
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return (directory / FILENAME).stat().st_size


def _paired_rounds(
    port: int, args: argparse.Namespace, photos: list[tuple[str, bytes]]
) -> dict[str, list[float]]:
    paths = {
        "classify": f"/classify?model={args.model}&top_k=5",
        "match": "/galleries/bench/match?top_k=5",
    }
    payloads = {
        route: [(multipart_request("127.0.0.1", port, path, [photo]), 1) for photo in photos]
        for route, path in paths.items()
    }
    rates: dict[str, list[float]] = {route: [] for route in paths}
    for route in paths:  # warm-up, also loads the gallery into memory
        asyncio.run(run_load("127.0.0.1", port, payloads[route], args.concurrency, 3.0))
    for round_ in range(args.rounds):
        order = list(paths) if round_ % 2 == 0 else list(reversed(paths))
        for route in order:
            result = asyncio.run(
                run_load("127.0.0.1", port, payloads[route], args.concurrency, args.duration)
            )
            _check(result, route)
            rates[route].append(result.images / result.elapsed_s)
    return rates


def _add_rate(port: int, args: argparse.Namespace, photos: list[tuple[str, bytes]]) -> float:
    """New products of 8 photos each, added to the full gallery (its copy in memory is
    extended, and duplicates checked against all of it, on every addition)."""
    batch = [photos[i % len(photos)] for i in range(8)]
    path = "/galleries/bench/products/new-{}/references"
    payloads = [
        (multipart_request("127.0.0.1", port, path.format(i), batch), 8) for i in range(200)
    ]
    result = asyncio.run(run_load("127.0.0.1", port, payloads, 4, args.duration))
    _check(result, "add references")
    return result.images / result.elapsed_s


def _check(result: LoadResult, route: str) -> None:
    if result.failures:
        raise RuntimeError(f"{route}: {result.failures} failed requests {result.statuses}")


def _report(
    args: argparse.Namespace,
    rates: dict[str, list[float]],
    added: float,
    size: int,
    floor: list[FloorRound] | str,
) -> None:
    medians = {route: statistics.median(values) for route, values in rates.items()}
    print(f"{args.model}, gallery of {args.references} references, concurrency {args.concurrency}")
    for route, values in rates.items():
        windows = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {route:>8}: median {medians[route]:.1f} images/s  ({windows})")
    ratios = [m / c for m, c in zip(rates["match"], rates["classify"], strict=True)]
    print(
        f"  match / classify: median {statistics.median(ratios):.3f} per pair "
        f"(range {min(ratios):.3f}-{max(ratios):.3f})"
    )
    if isinstance(floor, str):
        print(f"  in-process floor: {floor}")
    else:
        print(f"  {describe_floor(floor)}")
        cores = os.cpu_count() or 1
        print(
            f"  best match / classify if serving cost nothing more ({cores} cores busy at "
            f"classify's {medians['classify']:.1f} images/s): "
            f"{best_served_ratio(floor, medians['classify'], cores):.3f}"
        )
    print(f"  add references to it: {added:.1f} images/s (8 a request, 4 clients)")
    print(f"  store: {size / args.references * 1000 / 1e6:.2f} MB per 1,000 references")


if __name__ == "__main__":
    main()
