"""Golden test of the shipped default model on real photographs."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import ROOT
from tests.images import encode, photo

CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}


@pytest.fixture(scope="module")
def default_client() -> Iterator[TestClient]:
    settings = Settings(model_dir=ROOT / "models", max_batch_wait_ms=1)
    with TestClient(create_app(settings)) as client:
        yield client


def test_default_model_is_served(default_client: TestClient) -> None:
    names = [m["card"]["name"] for m in default_client.get("/models").json()["models"]]
    assert "imagenet-mobilenet-v2" in names


def test_coffee_is_espresso_and_the_cat_is_a_cat(default_client: TestClient) -> None:
    files = [
        ("image", ("coffee.jpg", encode(photo("coffee"), "JPEG", quality=90), "image/jpeg")),
        ("image", ("chelsea.jpg", encode(photo("chelsea"), "JPEG", quality=90), "image/jpeg")),
    ]
    answer = default_client.post("/classify", files=files, params={"top_k": 3})
    assert answer.status_code == 200
    body = answer.json()
    assert body["model"]["name"] == "imagenet-mobilenet-v2"
    coffee, cat = body["results"]
    assert coffee["predictions"][0]["label"] == "espresso"
    assert coffee["predictions"][0]["score"] > 0.8
    assert cat["predictions"][0]["label"] in CAT_CLASSES
    assert (cat["width"], cat["height"]) == (451, 300)


def test_card_records_the_upstream_evaluation(default_client: TestClient) -> None:
    card = default_client.get("/models/imagenet-mobilenet-v2").json()["card"]
    assert len(card["labels"]) == 1000
    assert card["metrics"][0]["values"]["acc@1"] == pytest.approx(71.878)
    assert card["input"] | {"normalization": None} == {
        "color_mode": "RGB",
        "resize_mode": "shorter_side",
        "resize_size": 256,
        "crop_size": 224,
        "interpolation": "bilinear",
        "dtype": "uint8",
        "layout": "NCHW",
        "normalization": None,
    }
