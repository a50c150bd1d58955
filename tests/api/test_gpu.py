"""On a CUDA machine: models load onto the GPU and answer exactly as on the CPU."""

import logging
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.galleries.index import GalleryIndex
from app.gpu_imaging import GpuJpegDecoder
from app.imaging import ImageLimits, decode_image
from app.main import create_app
from app.runtime.card import InputSpec
from app.runtime.loader import load_model
from app.runtime.precision import choose_precision
from app.runtime.preprocessing import draft_size, preprocess_image
from tests.galleries.helpers import gallery_snapshot
from tests.images import BLUE, GREEN, RED, encode, oriented_jpeg, photo, quadrants, solid

JPEG = {"Content-Type": "image/jpeg"}

pytestmark = pytest.mark.gpu
logger = logging.getLogger(__name__)


def test_auto_picks_cuda_and_reports_it(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"device": "auto"}))) as client:
        body = client.get("/models").json()
    assert body["device"].startswith("cuda")
    assert {model["device"] for model in body["models"]} == {"cuda"}


def test_cuda_answers_match_cpu(settings: Settings) -> None:
    files = [
        ("image", (f"{i}.png", solid(color), "image/png"))
        for i, color in enumerate((RED, GREEN, BLUE))
    ]
    files.append(("image", ("cat.jpg", encode(photo("chelsea"), "JPEG"), "image/jpeg")))
    answers = {}
    for device in ("cpu", "cuda"):
        with TestClient(create_app(settings.model_copy(update={"device": device}))) as client:
            answers[device] = client.post("/classify", files=files).json()["results"]
    for on_cpu, on_gpu in zip(answers["cpu"], answers["cuda"], strict=True):
        assert [p["label"] for p in on_cpu["predictions"]] == [
            p["label"] for p in on_gpu["predictions"]
        ]
        for cpu_prediction, gpu_prediction in zip(
            on_cpu["predictions"], on_gpu["predictions"], strict=True
        ):
            assert cpu_prediction["score"] == pytest.approx(gpu_prediction["score"], abs=1e-4)


def test_detector_boxes_match_cpu(settings: Settings) -> None:
    scene = encode(photo("coffee"), "PNG")
    answers = {}
    for device in ("cpu", "cuda"):
        with TestClient(create_app(settings.model_copy(update={"device": device}))) as client:
            answers[device] = client.post(
                "/detect", files={"image": ("c.png", scene, "image/png")}
            ).json()
    assert answers["cpu"]["results"] == answers["cuda"]["results"]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_is_parity_checked_and_close_to_fp32(
    settings: Settings, precision: str
) -> None:
    files = [("image", ("cat.jpg", encode(photo("chelsea"), "JPEG"), "image/jpeg"))]
    answers, described = {}, {}
    for wanted in ("fp32", precision):
        changed = settings.model_copy(update={"device": "cuda", "cuda_precision": wanted})
        with TestClient(create_app(changed)) as client:
            answers[wanted] = client.post("/classify", files=files).json()["results"][0]
            described[wanted] = client.get(f"/models/{settings.default_classifier}").json()
    record = described[precision]["precision"]
    assert record["requested"] == precision
    assert record["served"] == precision, record["reason"]
    bound = record["parity"]["bounds"]["max_score_difference"]
    assert record["parity"]["max_score_difference"] <= bound
    want, got = answers["fp32"]["predictions"], answers[precision]["predictions"]
    assert [p["label"] for p in want] == [p["label"] for p in got]
    for fp32, half in zip(want, got, strict=True):
        assert half["score"] == pytest.approx(fp32["score"], abs=bound)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_shipped_models_record_their_parity_on_cuda(precision: str) -> None:
    store = Path(__file__).resolve().parents[2] / "models"
    for folder in ("imagenet-mobilenet-v2", "fashion-products", "objects-segmenter"):
        loaded = load_model(store / folder, torch.device("cuda"))
        _, choice = choose_precision(loaded, precision)  # type: ignore[arg-type]
        assert choice.parity is not None, choice.reason  # measured, served or refused
        logger.warning("%s %s: %s (%s)", folder, precision, choice.served, choice.reason)


def test_gpu_decode_answers_as_the_cpu_decoder(settings: Settings) -> None:
    corrupt = bytearray(encode(photo("coffee"), "JPEG"))
    corrupt[600:4000] = b"\x00" * 3400
    files = [
        ("image", ("cat.jpg", encode(photo("chelsea"), "JPEG"), "image/jpeg")),
        ("image", ("turned.jpg", oriented_jpeg(quadrants(64, 48), 6), "image/jpeg")),
        ("image", ("flat.png", solid(RED), "image/png")),
        ("image", ("broken.jpg", bytes(corrupt), "image/jpeg")),
    ]
    answers = {}
    for decode in ("off", "on"):
        changed = settings.model_copy(update={"device": "cuda", "gpu_decode": decode})
        with TestClient(create_app(changed)) as client:
            answers[decode] = client.post("/classify", files=files).json()["results"]
    for on_cpu, on_gpu in zip(answers["off"], answers["on"], strict=True):
        assert on_gpu.get("error") == on_cpu.get("error")
        assert (on_gpu.get("width"), on_gpu.get("height")) == (on_cpu["width"], on_cpu["height"])
        if on_cpu.get("predictions"):
            assert on_gpu["predictions"][0]["label"] == on_cpu["predictions"][0]["label"]


def test_a_lone_corrupt_jpeg_is_a_400_on_the_gpu_path(settings: Settings) -> None:
    corrupt = bytearray(encode(photo("coffee"), "JPEG"))
    corrupt[600:4000] = b"\x00" * 3400
    changed = settings.model_copy(update={"device": "cuda", "gpu_decode": "on"})
    with TestClient(create_app(changed)) as client:
        answer = client.post("/classify", content=bytes(corrupt), headers=JPEG)
        fine = client.post("/classify", content=encode(photo("chelsea"), "JPEG"), headers=JPEG)
    assert fine.status_code == 200
    if answer.status_code != 200:  # libjpeg may decode the damage with a warning, as on CPU
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_image"


def test_gpu_tensor_preprocessing_is_within_the_bound_of_the_cpu_path() -> None:
    limits = ImageLimits(max_bytes=20 << 20, max_pixels=40_000_000, min_side=8)
    decoder = GpuJpegDecoder(limits, torch.device("cuda"))
    for spec in (
        InputSpec(resize_size=256, crop_size=224),
        InputSpec(resize_mode="stretch", resize_size=520),
        InputSpec(resize_mode="longer_side", resize_size=800),
    ):
        for name in ("astronaut", "chelsea", "coffee", "rocket"):
            data = encode(photo(name), "JPEG", quality=90)
            expected = preprocess_image(decode_image(data, limits, draft_size(spec)).image, spec)
            (image,) = decoder.prepare_many([data], spec)
            assert image is not None and image.pixels.is_cuda
            gap = (image.pixels.cpu().float() - expected.float()).abs().mean().item()
            assert gap <= 4.0, (name, spec, gap)


def test_gallery_search_runs_on_the_queries_device_with_the_cpu_answers() -> None:
    generator = torch.Generator().manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(500, 64, generator=generator), dim=1)
    index = GalleryIndex(gallery_snapshot(rows.numpy(), [f"p{i % 100}" for i in range(500)]))
    queries = rows[[3, 250, 499]] + 0.01
    on_cpu = index.search(queries, top_k=5)
    before = torch.cuda.memory_allocated()
    on_gpu = index.search(queries.cuda(), top_k=5)
    assert torch.cuda.memory_allocated() - before >= rows.numel() * 4  # references kept there
    assert index.search(queries.cuda(), top_k=5) == on_gpu
    for cpu_hits, gpu_hits in zip(on_cpu, on_gpu, strict=True):
        assert [h.reference_id for h in cpu_hits] == [h.reference_id for h in gpu_hits]
        for cpu_hit, gpu_hit in zip(cpu_hits, gpu_hits, strict=True):
            assert cpu_hit.similarity == pytest.approx(gpu_hit.similarity, abs=1e-5)
