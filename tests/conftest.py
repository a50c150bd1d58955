"""Shared fixtures: a tiny scripted classifier in a temporary model store, settings, clients."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from app.config import Settings
from app.main import create_app
from app.runtime.card import DetectionSpec, InputSpec, ModelCard, Normalization
from tests.segmenters import TINY_SEGMENTER, export_tiny_segmenter
from training.classification.modules import NormalizedClassifier
from training.core.export import export_model, framework_versions

ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = "tiny-colors"
TINY_DETECTOR = "tiny-boxes"


class TopLeftColor(nn.Module):
    """Classifies by the mean colour of the top-left quadrant: orientation errors change it."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        height, width = pixels.shape[2], pixels.shape[3]
        return pixels[:, :, : height // 2, : width // 2].mean(dim=(2, 3)) * 10.0


def tiny_card(name: str = TINY_MODEL, **changes: object) -> ModelCard:
    """The card of the tiny colour classifier."""
    card = ModelCard(
        name=name,
        version="0.0.1",
        task="classify",
        architecture="top-left-color",
        framework=framework_versions(),
        labels=("red", "green", "blue"),
        input=InputSpec(
            resize_size=32,
            crop_size=32,
            normalization=Normalization(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        ),
    )
    return card.model_copy(update=changes)


def tiny_module() -> nn.Module:
    """The eager tiny classifier, input conversion included."""
    return NormalizedClassifier(TopLeftColor(), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


class RedBoxDetector(nn.Module):
    """Boxes the red pixels (class 1, score 0.9) and, weakly, the whole image (class 2, 0.1)."""

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        results: list[dict[str, torch.Tensor]] = []
        for image in images:
            pixels = image.float()
            height, width = pixels.shape[1], pixels.shape[2]
            red = (pixels[0] > 150) & (pixels[1] < 100) & (pixels[2] < 100)
            points = red.nonzero()
            whole = torch.tensor([[0.0, 0.0, float(width), float(height)]])
            boxes, scores, labels = whole, torch.tensor([0.1]), torch.tensor([2])
            if points.shape[0] > 0:
                top_left = points.min(dim=0).values.float()
                bottom_right = points.max(dim=0).values.float() + 1.0
                found = torch.stack([top_left[1], top_left[0], bottom_right[1], bottom_right[0]])
                boxes = torch.cat([whole, found.unsqueeze(0)])
                scores = torch.tensor([0.1, 0.9])
                labels = torch.tensor([2, 1])
            results.append({"boxes": boxes, "scores": scores, "labels": labels})
        return results


def tiny_detector_card() -> ModelCard:
    """The card of the tiny red-box detector."""
    return ModelCard(
        name=TINY_DETECTOR,
        version="0.0.1",
        task="detect",
        architecture="red-box",
        framework=framework_versions(),
        labels=("__background__", "red thing", "anything"),
        input=InputSpec(resize_mode="longer_side", resize_size=160),
        detection=DetectionSpec(score_threshold=0.5),
    )


@pytest.fixture(scope="session", autouse=True)
def tuning_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Tuning profiles go to a temporary folder (every Settings reads it), never the repository."""
    directory = tmp_path_factory.mktemp("tuning")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISION_TUNING_DIR", str(directory))
        yield directory


@pytest.fixture(scope="session", autouse=True)
def gallery_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The embedded gallery store goes to a temporary folder, never the repository."""
    directory = tmp_path_factory.mktemp("galleries")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISION_GALLERY_DIR", str(directory))
        yield directory


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store holding the tiny classifier, exported through the real exporter."""
    store = tmp_path_factory.mktemp("models")
    export_model(tiny_module(), tiny_card(), store)
    export_model(RedBoxDetector(), tiny_detector_card(), store)
    export_tiny_segmenter(store)
    return store


@pytest.fixture
def settings(model_store: Path) -> Settings:
    """Settings for the tiny store, with small limits that tests can reach."""
    return Settings(
        model_dir=model_store,
        default_classifier=TINY_MODEL,
        default_detector=TINY_DETECTOR,
        default_segmenter=TINY_SEGMENTER,
        max_batch_size=8,
        max_batch_wait_ms=2.0,
        autotune_batch_size=False,
        max_image_bytes=2 * 1024 * 1024,
        max_image_pixels=4_000_000,
        max_images_per_request=4,
        decode_threads=2,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The real app through its lifespan."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (the loop uvicorn uses)."""
    return "asyncio"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `gpu` tests, with the reason, where CUDA is absent."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
