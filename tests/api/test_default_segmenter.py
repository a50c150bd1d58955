"""Golden test of the shipped segmenter on fixed held-out generated scenes, through HTTP."""

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.main import create_app
from app.services.masks import ClassRle, decode_rle
from tests.conftest import ROOT
from tests.images import encode, photo
from training.core import scenes
from training.core.scenes import SceneConfig, render_scene_mask
from training.segmentation.metrics import SegmentationScorer

MODEL = "objects-segmenter"
pytestmark = [
    pytest.mark.skipif(
        not (scenes.STAMP_ROOT.is_dir() and scenes.BACKGROUND_ROOT.is_dir()),
        reason="needs Debian tuxpaint-stamps-default and mate-backgrounds (`make scenes-data`)",
    ),
    pytest.mark.skipif(
        not (ROOT / "models" / MODEL / "model.pt").is_file(),
        reason=f"models/{MODEL} is not in this checkout (`make models` trains it)",
    ),
]
TEST_SCENES = range(8)  # the first scenes of the default config's held-out test split


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    store = tmp_path_factory.mktemp("store")
    (store / MODEL).symlink_to(ROOT / "models" / MODEL)  # this model only: a quick start
    settings = Settings(
        model_dir=Path(store), default_segmenter=MODEL, max_batch_size=2, autotune_batch_size=False
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def png(result: dict[str, object]) -> np.ndarray:
    mask = result["mask"]
    assert isinstance(mask, dict)
    return np.array(Image.open(io.BytesIO(base64.b64decode(mask["data"]))))  # writable


def test_held_out_scenes_are_segmented_as_the_card_says(client: TestClient) -> None:
    card = client.get(f"/models/{MODEL}").json()["card"]
    scorer = SegmentationScorer(tuple(card["labels"]))
    for index in TEST_SCENES:
        image, truth, _ = render_scene_mask(SceneConfig(), "test", index)
        upload = encode(image, "JPEG", quality=90)
        answer = client.post("/segment", files={"image": (f"{index}.jpg", upload, "image/jpeg")})
        assert answer.status_code == 200
        [result] = answer.json()["results"]
        mask = png(result)
        assert mask.shape == truth.shape
        assert sum(c["pixels"] for c in result["classes"]) == truth.size
        scorer.update(torch.from_numpy(mask), torch.from_numpy(truth))
    metrics = scorer.compute()
    card_miou = card["metrics"][0]["values"]["miou"]
    # 8 scenes are a small sample of the card's 300: allow for it, but not for a broken model.
    assert metrics.miou >= card_miou - 0.2, (metrics.miou, card_miou)
    assert metrics.pixel_accuracy >= 0.85


def test_a_real_photo_answers_the_same_mask_as_png_and_rle(client: TestClient) -> None:
    upload = encode(photo("chelsea"), "JPEG", quality=95)
    files = {"image": ("cat.jpg", upload, "image/jpeg")}
    [as_png] = client.post("/segment", files=files).json()["results"]
    [as_rle] = client.post("/segment", params={"format": "rle"}, files=files).json()["results"]
    mask = png(as_png)
    assert mask.shape == (300, 451)
    rebuilt = np.full_like(mask, 255)
    for item in as_rle["mask"]["classes"]:
        binary = decode_rle(ClassRle(class_id=0, size=tuple(item["size"]), counts=item["counts"]))
        rebuilt[binary.astype(bool)] = item["class_id"]
    assert np.array_equal(rebuilt, mask)
    assert as_rle["classes"] == as_png["classes"]
