"""An int8 classifier served through the same routes, batcher and runtime choice."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.main import create_app
from app.runtime.loader import load_model
from app.runtime.preprocessing import preprocess_image
from tests.images import encode
from tests.quantized import TINY_INT8, export_tiny_int8


@pytest.fixture(scope="module")
def int8_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("int8-models")
    export_tiny_int8(store)
    return store


@pytest.fixture(scope="module")
def int8_client(int8_store: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=int8_store,
        default_classifier=TINY_INT8,
        max_batch_size=4,
        max_batch_wait_ms=2.0,
        autotune_batch_size=False,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def grey_images(count: int) -> list[Image.Image]:
    generator = np.random.default_rng(3)
    return [
        Image.fromarray(generator.integers(0, 256, (40, 36), dtype=np.uint8), mode="L")
        for _ in range(count)
    ]


def test_classify_answers_with_the_int8_archives_predictions(
    int8_client: TestClient, int8_store: Path
) -> None:
    images = grey_images(3)
    files = [
        ("image", (f"{i}.png", encode(image, "PNG"), "image/png")) for i, image in enumerate(images)
    ]
    answer = int8_client.post("/classify", files=files, params={"top_k": 4})
    assert answer.status_code == 200
    body = answer.json()
    assert body["model"]["name"] == TINY_INT8
    loaded = load_model(int8_store / TINY_INT8, torch.device("cpu"))
    batch = torch.stack([preprocess_image(image, loaded.card.input) for image in images])
    with torch.inference_mode():
        logits = loaded.module(batch)[0]
    for result, row in zip(body["results"], logits, strict=True):
        assert result["predictions"][0]["class_id"] == int(row.argmax())
        scores = [p["score"] for p in result["predictions"]]
        expected = torch.softmax(row, 0).sort(descending=True).values
        assert scores == pytest.approx(expected.tolist(), abs=1e-5)


def test_models_shows_the_precision_and_the_skipped_onednn_pass(int8_client: TestClient) -> None:
    [model] = int8_client.get("/models").json()["models"]
    assert model["card"]["precision"] == "int8"
    assert model["card"]["quantization"]["backend"] == "x86"
    assert model["tuning"]["runtime"] == "as loaded"
    assert "int8" in model["tuning"]["runtime_reason"]
