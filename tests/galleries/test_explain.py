"""explain=true: the exported activation maps, checked against hook-based Grad-CAM, and the
heat maps /classify and /match return."""

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from app.main import create_app
from app.runtime.card import InputSpec
from app.runtime.inference import split_maps
from app.runtime.loader import load_model
from app.services.explanations import input_box
from tests.conftest import tiny_card
from tests.galleries.helpers import EMBEDDER, export_embedders
from tests.galleries.test_routes import gallery_settings
from tests.images import BLUE, RED, encode, photo
from training.classification.modules import (
    ExplainingClassifier,
    NormalizedClassifier,
    SmallCNN,
    explaining,
    outputs_of,
)
from training.core.export import export_model

EXPLAINER = "tiny-explainer"


def test_class_map_equals_hook_based_grad_cam(tmp_path: Path) -> None:
    """The exported, frozen TorchScript map against pytorch-grad-cam's on the eager model."""
    torch.manual_seed(0)
    classifier = NormalizedClassifier(SmallCNN(3, 10), (0.5,) * 3, (0.25,) * 3).eval()
    module = explaining(classifier)
    assert module is not None
    card = tiny_card(
        "cam-check",
        labels=tuple(str(i) for i in range(10)),
        input=InputSpec(resize_size=64, crop_size=64),
        outputs=outputs_of(module),
        embedding_dim=module.embedding_dim,
    )
    loaded = load_model(export_model(module, card, tmp_path), torch.device("cpu"))
    images = torch.from_numpy(
        np.stack([np.asarray(photo(name).resize((64, 64))) for name in ("chelsea", "coffee")])
    ).permute(0, 3, 1, 2)
    with torch.inference_mode():
        output = loaded.module(images)
    maps = split_maps(output, loaded.card, len(images))
    assert maps is not None
    # The library's own post-processing: ReLU, scale to [0, 1] and resize, scale again.
    ours = scale_cam_image(scale_cam_image(np.maximum(maps[1].numpy(), 0), (64, 64)))
    top = output[0].argmax(dim=1).tolist()
    with GradCAM(model=classifier, target_layers=[classifier.backbone.features]) as cam:
        reference = cam(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in top])
    assert np.abs(ours - reference).max() < 1e-4
    assert ours.max() == pytest.approx(1.0, abs=1e-4)  # not a blank map compared to another


def test_crop_box_in_upright_pixels() -> None:
    spec = InputSpec(resize_size=256, crop_size=224)
    assert input_box(512, 512, spec) == pytest.approx((32.0, 32.0, 480.0, 480.0))
    left, top, right, bottom = input_box(1024, 512, spec)  # resized 512 x 256
    assert (top, bottom) == pytest.approx((32.0, 480.0))
    assert (left + right) / 2 == pytest.approx(512.0, abs=2.0)


class CellColours(nn.Module):
    """A 4 x 4 feature map: the mean colour of each cell of the image."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(pixels, 4)


@pytest.fixture(scope="module")
def explainer_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An explaining colour classifier (class = colour) and the tiny embedder that cannot."""
    store = tmp_path_factory.mktemp("explain-models")
    head = nn.Linear(3, 3)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3))
        head.bias.zero_()
    module = ExplainingClassifier(
        CellColours(), head, torch.ones(1, 3, 1, 1), torch.zeros(1, 3, 1, 1)
    )
    card = tiny_card(EXPLAINER, outputs=outputs_of(module), embedding_dim=3)
    export_model(module, card, store)
    export_embedders(store)
    return store


@pytest.fixture
def client(explainer_store: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = gallery_settings(explainer_store, tmp_path / "g", default_classifier=EXPLAINER)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def half_red_half_blue(width: int = 80, height: int = 40) -> bytes:
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return encode(image, "PNG")


def decode_png(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def test_classify_heat_map_covers_the_upload_and_points_at_the_class(client: TestClient) -> None:
    files = {"image": ("x.png", half_red_half_blue(), "image/png")}
    answer = client.post("/classify", files=files, params={"explain": "true"})
    assert answer.status_code == 200, answer.text
    [result] = answer.json()["results"]
    heat = decode_png(result["heat_map"]["data"])
    assert heat.shape == (40, 80)  # the upright upload's size
    top = result["predictions"][0]["label"]
    red_side, blue_side = heat[:, :30].mean(), heat[:, 50:].mean()
    assert (red_side > blue_side) == (top == "red")
    plain = client.post("/classify", files=files)
    assert "heat_map" not in plain.json()["results"][0]


def test_match_heat_map_and_models_that_cannot_explain(client: TestClient) -> None:
    client.put("/galleries/shop", json={"model": EXPLAINER, "threshold": 0.5})
    red = Image.new("RGB", (40, 40), RED)
    client.post(
        "/galleries/shop/products/red/references",
        files={"image": ("r.png", encode(red, "PNG"), "image/png")},
    )
    files = {"image": ("x.png", half_red_half_blue(), "image/png")}
    answer = client.post("/galleries/shop/match", files=files, params={"explain": "true"})
    [result] = answer.json()["results"]
    heat = decode_png(result["heat_map"]["data"])
    assert heat.shape == (40, 80) and heat[:, :30].mean() > heat[:, 50:].mean()
    refused = client.post("/classify", files=files, params={"explain": "true", "model": EMBEDDER})
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "cannot_explain")
