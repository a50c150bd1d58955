"""On a CUDA machine: models load onto the GPU and answer exactly as on the CPU."""

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.images import BLUE, GREEN, RED, encode, photo, solid

pytestmark = pytest.mark.gpu


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
