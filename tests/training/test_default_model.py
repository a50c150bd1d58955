"""Golden checks of the shipped fashion-products model: its card, its accuracy, its serving."""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.runtime.loader import load_model
from tests.conftest import ROOT
from tests.images import encode, photo
from tests.training.helpers import needs_fashion_mnist
from training.classification.artifact import evaluate_artifact
from training.classification.data import fashion_mnist_images
from training.classification.decision_report import evaluate_decisions, unknown_outputs
from training.classification.unknowns import load_unknown

MODEL_DIR = ROOT / "models" / "fashion-products"


def test_card_records_the_test_metrics_and_how_it_was_trained() -> None:
    card = load_model(MODEL_DIR, torch.device("cpu")).card
    assert card.labels[0] == "T-shirt/top"
    assert len(card.labels) == 10
    assert (card.input.color_mode, card.input.resize_mode, card.input.resize_size) == (
        "L",
        "stretch",
        28,
    )
    test = card.metrics[0]
    assert (test.dataset, test.split, test.values["images"]) == ("fashion-mnist", "test", 10_000)
    assert test.values["top1"] >= 0.945  # issue 9 keeps it at or above 94.5%; shipped: 94.65%
    assert test.per_class is not None
    assert set(test.per_class) == set(card.labels)
    assert card.training is not None
    assert " -m training train " in card.training["command"]
    assert card.training["recipe"]["data"] == "builtin:fashion-mnist"
    assert card.training["wall_time_s"] > 0
    assert card.training["machine"]["cpu_cores"] >= 1
    for name in ("confusion_matrix.png", "curves.png", "misclassified.png", "metrics.json"):
        assert (MODEL_DIR / name).is_file()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings = Settings(model_dir=ROOT / "models", max_batch_wait_ms=1)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@needs_fashion_mnist
def test_served_next_to_the_imagenet_model(client: TestClient) -> None:
    names = {m["card"]["name"] for m in client.get("/models").json()["models"]}
    assert {"fashion-products", "imagenet-mobilenet-v2"} <= names
    images = fashion_mnist_images("test")
    files = [("image", (f"{i}.png", images.read_bytes(i), "image/png")) for i in range(8)]
    response = client.post("/classify?model=fashion-products&top_k=1", files=files)
    assert response.status_code == 200, response.text
    predicted = [r["predictions"][0]["class_id"] for r in response.json()["results"]]
    correct = sum(p == t for p, t in zip(predicted, images.targets[:8], strict=True))
    assert correct >= 7


@pytest.mark.slow
@needs_fashion_mnist
def test_artifact_evaluation_reproduces_the_card() -> None:
    result = evaluate_artifact(MODEL_DIR, "builtin:fashion-mnist", "test", progress=False)
    test = result.model.card.metrics[0]
    assert result.metrics.count == 10_000
    assert result.metrics.top1 == pytest.approx(test.values["top1"], abs=2e-4)
    assert result.metrics.macro_f1 == pytest.approx(test.values["macro_f1"], abs=1e-3)


def test_card_carries_the_calibration_and_where_its_threshold_came_from() -> None:
    loaded = load_model(MODEL_DIR, torch.device("cpu"))
    calibration = loaded.card.calibration
    assert calibration is not None
    assert calibration.data == "fashion-mnist val (6000 images)"
    assert calibration.ece_after <= 0.02 < calibration.ece_before
    open_set = calibration.open_set
    assert (open_set.method, open_set.k, open_set.references) == ("knn", 10, 5_000)
    assert open_set.unknown_data == "builtin:objects (796 images)"
    assert open_set.target_tpr == 0.97
    assert set(open_set.compared) == {"msp", "energy", "knn@1", "knn@10", "knn@50"}
    assert loaded.references is not None and loaded.references.shape == (5_000, 320)
    assert (MODEL_DIR / "reliability.png").is_file()


@needs_fashion_mnist
def test_real_photos_and_digits_are_none_of_its_products(client: TestClient) -> None:
    """The issue's cases: a cat, a coffee cup and hand-written digits are not garments."""
    digits = load_unknown("builtin:digits")
    files = [
        ("image", ("chelsea.jpg", encode(photo("chelsea")), "image/jpeg")),
        ("image", ("coffee.jpg", encode(photo("coffee")), "image/jpeg")),
    ] + [("image", (f"digit-{i}.png", digits.read_bytes(i), "image/png")) for i in range(6)]
    results = client.post("/classify?model=fashion-products", files=files).json()["results"]
    assert [r["decision"] for r in results] == ["unknown"] * len(files)
    garments = fashion_mnist_images("test")
    files = [("image", (f"{i}.png", garments.read_bytes(i), "image/png")) for i in range(8)]
    results = client.post("/classify?model=fashion-products", files=files).json()["results"]
    assert sum(r["decision"] == "match" for r in results) >= 6


@pytest.mark.slow
@needs_fashion_mnist
def test_decision_targets_hold_on_data_the_threshold_never_saw() -> None:
    """Issue 9's targets on the official test split and two real unknown sets of other kinds."""
    result = evaluate_artifact(MODEL_DIR, "builtin:fashion-mnist", "test", progress=False)
    unknowns = {
        source: unknown_outputs(result.model, source, batch_size=256, workers=2)
        for source in ("builtin:digits", "builtin:nature-photos")
    }
    with tempfile.TemporaryDirectory() as report:
        figures = evaluate_decisions(result, unknowns, Path(report))
    assert figures["ece_calibrated"] <= 0.02
    assert figures["known"]["tpr"] >= 0.95
    for source in unknowns:
        assert figures["unknown"][source]["auroc"] >= 0.95
        assert figures["unknown"][source]["fpr"] <= 0.10
