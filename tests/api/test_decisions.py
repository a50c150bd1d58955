"""Decisions in /classify: calibrated scores, unknown_score, decision, min_probability, sha256."""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from app.config import Settings
from app.main import create_app
from app.runtime.card import CalibrationSpec, OpenSetSpec
from app.runtime.loader import load_model
from tests.conftest import TINY_MODEL, tiny_card, tiny_module
from tests.images import RED, encode, photo, solid
from training.classification.modules import EmbeddingClassifier, NormalizedClassifier
from training.core.export import export_model, rewrite_archive

CALIBRATED = "tiny-colors-calibrated"
TEMPERATURE = 2.0
ACCEPT = 0.9
THRESHOLD = 0.2


class TopLeftMean(nn.Module):
    """The mean colour of the top-left quadrant, in [0, 1]: the tiny model's features."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        height, width = pixels.shape[2], pixels.shape[3]
        return pixels[:, :, : height // 2, : width // 2].mean(dim=(2, 3))


def calibrated_module() -> EmbeddingClassifier:
    """The tiny colour classifier (logits = 10 x colour) with its features as the embedding."""
    head = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3) * 10.0)
    classifier = NormalizedClassifier(nn.Sequential(TopLeftMean(), head), (0.0,) * 3, (1.0,) * 3)
    return EmbeddingClassifier(classifier, "1")


def calibration() -> CalibrationSpec:
    """Pure red, green and blue are the references; a colour far from all three is unknown."""
    open_set = OpenSetSpec(
        method="knn",
        threshold=THRESHOLD,
        k=1,
        references=3,
        target_tpr=0.95,
        known_data="three colours",
        unknown_data=None,
        tpr_known=1.0,
    )
    return CalibrationSpec(
        temperature=TEMPERATURE,
        data="three colours",
        images=3,
        ece_before=0.1,
        ece_after=0.01,
        accept_probability=ACCEPT,
        accept_rule="fixed for the test",
        open_set=open_set,
    )


@pytest.fixture(scope="module")
def decision_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uncalibrated and a calibrated tiny classifier, exported and calibrated for real."""
    store = tmp_path_factory.mktemp("decision-models")
    export_model(tiny_module(), tiny_card(), store)
    card = tiny_card(CALIBRATED, outputs=("logits", "embedding"), embedding_dim=3)
    export_model(calibrated_module(), card, store)
    loaded = load_model(store / CALIBRATED, torch.device("cpu"))
    calibrated_card = card.model_copy(update={"calibration": calibration()})
    rewrite_archive(loaded.module, calibrated_card, store, references=torch.eye(3))
    return store


@pytest.fixture
def client(decision_store: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=decision_store,
        default_classifier=CALIBRATED,
        default_detector=CALIBRATED,
        autotune_batch_size=False,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def classify(
    client: TestClient, images: list[bytes], **params: str | float
) -> list[dict[str, object]]:
    files = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    answer = client.post("/classify", files=files, params=params)
    assert answer.status_code == 200, answer.text
    results: list[dict[str, object]] = answer.json()["results"]
    return results


def test_a_known_colour_is_a_match_with_calibrated_probabilities(client: TestClient) -> None:
    red = solid(RED)
    [result] = classify(client, [red])
    assert result["decision"] == "match"
    # 1 - cosine similarity of the colour to its nearest reference, pure red.
    nearest = RED[0] / sum(c * c for c in RED) ** 0.5
    assert result["unknown_score"] == pytest.approx(1 - nearest, abs=1e-4)
    assert result["image_sha256"] == hashlib.sha256(red).hexdigest()
    colour = torch.tensor(RED, dtype=torch.float32) / 255
    expected = (colour * 10 / TEMPERATURE).softmax(dim=0)
    predictions = result["predictions"]
    assert isinstance(predictions, list)
    assert [p["score"] for p in predictions] == pytest.approx(sorted(expected.tolist())[::-1])


def test_grey_is_none_of_the_colours_and_a_dull_red_is_uncertain(client: TestClient) -> None:
    grey, dull_red = solid((128, 128, 128)), solid((120, 60, 60))
    results = classify(client, [grey, dull_red, encode(photo("coffee"))])
    assert [r["decision"] for r in results[:2]] == ["unknown", "uncertain"]
    assert results[0]["unknown_score"] == pytest.approx(1 - 3**-0.5, abs=1e-3)
    # unknown_score orders: grey is further from every reference than the dull red.
    assert results[0]["unknown_score"] > results[1]["unknown_score"]  # type: ignore[operator]


def test_min_probability_overrides_the_accept_threshold(client: TestClient) -> None:
    dull_red = solid((120, 60, 60))
    assert classify(client, [dull_red], min_probability=0.5)[0]["decision"] == "match"
    assert classify(client, [dull_red])[0]["decision"] == "uncertain"
    answer = client.post(
        "/classify",
        files={"image": ("r.png", dull_red, "image/png")},
        params={"min_probability": 0.5},
    )
    rule = answer.json()["decision_rule"]
    assert rule == {
        "accept_probability": 0.5,
        "unknown_threshold": THRESHOLD,
        "open_set_method": "knn",
    }


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "high"])
def test_min_probability_outside_zero_one_is_422(client: TestClient, value: str) -> None:
    answer = client.post(
        "/classify",
        files={"image": ("r.png", solid(RED), "image/png")},
        params={"min_probability": value},
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation"


def test_an_uncalibrated_model_answers_as_before_and_says_so(client: TestClient) -> None:
    answer = client.post(
        "/classify",
        params={"model": TINY_MODEL},
        files={"image": ("r.png", solid(RED), "image/png")},
    )
    body = answer.json()
    assert body["calibrated"] is False and "decision_rule" not in body
    [result] = body["results"]
    assert "decision" not in result and "unknown_score" not in result
    assert len(result["image_sha256"]) == 64
    described = client.get(f"/models/{TINY_MODEL}").json()
    assert described["calibrated"] is False
    assert described["card"]["calibration"] is None
    assert client.get(f"/models/{CALIBRATED}").json()["calibrated"] is True


def test_min_probability_on_an_uncalibrated_model_is_refused(client: TestClient) -> None:
    answer = client.post(
        "/classify",
        params={"model": TINY_MODEL, "min_probability": 0.5},
        files={"image": ("r.png", solid(RED), "image/png")},
    )
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "not_calibrated"


def test_a_bad_image_in_a_batch_keeps_its_hash_and_its_neighbours_decide(
    client: TestClient,
) -> None:
    broken = b"\x89PNG\r\n\x1a\n" + b"not really"
    results = classify(client, [solid(RED), broken])
    assert results[0]["decision"] == "match"
    assert "error" in results[1] and "decision" not in results[1]
    assert results[1]["image_sha256"] == hashlib.sha256(broken).hexdigest()
