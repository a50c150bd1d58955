"""Presets: eval is the service's preprocessing exactly; train ends at the card's tensor shape."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.imaging import decode_image
from app.runtime.card import InputSpec
from app.runtime.preprocessing import draft_size, preprocess_image
from tests.images import encode, photo
from training.classification.images import ArrayImages, FileImages, ImageDataset
from training.classification.transforms import (
    EvalPreset,
    TrainPreset,
    channel_statistics,
    choose_augment,
)
from training.core.datacheck import TRAINING_LIMITS

GREY_28 = InputSpec(color_mode="L", resize_mode="stretch", resize_size=28)
RGB_224 = InputSpec(resize_size=256, crop_size=224)


def served_tensor(data: bytes, spec: InputSpec) -> torch.Tensor:
    """What the service feeds the model for an upload (app/services/uploads.py)."""
    return preprocess_image(decode_image(data, TRAINING_LIMITS, draft_size(spec)).image, spec)


@pytest.mark.parametrize("spec", [GREY_28, RGB_224], ids=["grey-28", "rgb-224"])
def test_eval_preset_on_a_jpeg_file_is_what_the_service_computes(
    spec: InputSpec, tmp_path: Path
) -> None:
    upload = encode(photo("chelsea"), "JPEG", quality=90)
    path = tmp_path / "cat.jpg"
    path.write_bytes(upload)
    dataset = ImageDataset(FileImages([path], [0], ["x"]), EvalPreset(spec), draft_size(spec))
    assert torch.equal(dataset[0][0], served_tensor(upload, spec))


def test_eval_preset_on_array_images_matches_their_uploaded_png() -> None:
    generator = np.random.default_rng(0)
    pixels = generator.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    images = ArrayImages(pixels, [0, 1, 2], "random", np.arange(3))
    for index in range(3):
        expected = served_tensor(images.read_bytes(index), GREY_28)
        assert torch.equal(EvalPreset(GREY_28)(images.load(index)), expected)
        assert torch.equal(expected[0], torch.from_numpy(pixels[index]))  # lossless at 28 px


@pytest.mark.parametrize("augment", ["none", "small", "standard"])
@pytest.mark.parametrize("spec", [GREY_28, RGB_224], ids=["grey-28", "rgb-224"])
def test_train_preset_ends_at_the_card_shape(spec: InputSpec, augment: str) -> None:
    preset = TrainPreset(spec, choose_augment(augment, 28), random_erasing=0.5)
    out = preset(photo("astronaut").resize((300, 200)))
    side = spec.tensor_size[0]
    assert out.dtype == torch.uint8
    assert out.shape == (spec.channels, side, side)


def test_small_preset_pads_crops_and_flips() -> None:
    image = Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28))
    preset = TrainPreset(GREY_28, "small")
    torch.manual_seed(0)
    views = {preset(image).numpy().tobytes() for _ in range(20)}
    assert len(views) > 5


def test_auto_augment_picks_by_size() -> None:
    assert choose_augment("auto", 28) == "small"
    assert choose_augment("auto", 224) == "standard"
    with pytest.raises(ValueError, match="unknown augmentation"):
        choose_augment("heavy", 28)


def test_channel_statistics() -> None:
    images = [
        torch.zeros(1, 4, 4, dtype=torch.uint8),
        torch.full((1, 4, 4), 255, dtype=torch.uint8),
    ]
    mean, std = channel_statistics(images)
    assert mean == (0.5,)
    assert std == (0.5,)
