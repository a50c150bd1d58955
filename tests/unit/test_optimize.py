"""CPU optimisation is applied only where it gives the loaded model's answers."""

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from app.imaging import to_rgb
from app.runtime.card import InputSpec, Normalization
from app.runtime.loader import LoadedModel, load_model
from app.runtime.optimize import ForwardTimer, median_forward_seconds, optimize_for_cpu
from app.runtime.preprocessing import preprocess_image
from tests.conftest import ROOT, TINY_DETECTOR, tiny_card
from tests.images import photo
from training.modules import NormalizedClassifier

CPU = torch.device("cpu")
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "cat")


def conv_bn_classifier() -> LoadedModel:
    """A scripted, frozen conv + batch-norm classifier with non-trivial statistics."""
    torch.manual_seed(0)
    backbone = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    norm = backbone[1]
    assert isinstance(norm, nn.BatchNorm2d)
    assert norm.running_mean is not None and norm.running_var is not None
    norm.running_mean.uniform_(-0.5, 0.5)
    norm.running_var.uniform_(0.5, 2.0)
    module = NormalizedClassifier(backbone, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval()
    scripted = torch.jit.freeze(torch.jit.script(module))
    spec = InputSpec(
        resize_size=16,
        crop_size=16,
        normalization=Normalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
    )
    return LoadedModel(tiny_card(input=spec), scripted, "0" * 64, CPU)


def timer_favouring(graph_marker: str) -> ForwardTimer:
    """A stand-in clock: modules whose graph contains the marker run in 1 ms, others in 2 ms."""
    return lambda module, images: 0.001 if graph_marker in str(module.graph) else 0.002


OPTIMIZED_IS_FASTER = timer_favouring("mkldnn")


def test_a_conv_classifier_is_optimised_and_answers_the_same() -> None:
    loaded = conv_bn_classifier()
    optimized = optimize_for_cpu(loaded, OPTIMIZED_IS_FASTER)
    assert optimized.module is not loaded.module
    assert (optimized.card, optimized.sha256) == (loaded.card, loaded.sha256)
    assert "mkldnn" in str(optimized.module.graph)
    assert "mkldnn" not in str(loaded.module.graph)  # the fallback stays as loaded
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    with torch.inference_mode():
        torch.testing.assert_close(optimized.module(images), loaded.module(images))


def test_an_optimisation_that_is_no_faster_is_not_kept(caplog: pytest.LogCaptureFixture) -> None:
    loaded = conv_bn_classifier()
    with caplog.at_level(logging.INFO):
        assert optimize_for_cpu(loaded, lambda module, images: 0.001) is loaded
    assert "served as loaded; optimising is no faster (1.0 -> 1.0 ms per batch of 2)" in caplog.text


def test_the_forward_timer_measures_a_real_pass() -> None:
    loaded = conv_bn_classifier()
    seconds = median_forward_seconds(loaded.module, torch.zeros((2, 3, 16, 16), dtype=torch.uint8))
    assert 0 < seconds < 1


def test_a_disagreeing_pass_leaves_the_model_as_loaded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = conv_bn_classifier()
    wrong = torch.jit.script(NormalizedClassifier(nn.Flatten(), (0.0,), (1.0,)))
    monkeypatch.setattr(torch.jit, "optimize_for_inference", lambda module: wrong)
    with caplog.at_level(logging.WARNING):
        assert optimize_for_cpu(loaded) is loaded
    assert "served as loaded, not optimised (wrong outputs" in caplog.text


def test_a_failing_pass_leaves_the_model_as_loaded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
        raise RuntimeError("unsupported op")

    loaded = conv_bn_classifier()
    monkeypatch.setattr(torch.jit, "optimize_for_inference", fail)
    with caplog.at_level(logging.WARNING):
        assert optimize_for_cpu(loaded) is loaded
    assert "the pass failed: unsupported op" in caplog.text


def test_detectors_are_left_as_loaded(model_store: Path) -> None:
    loaded = load_model(model_store / TINY_DETECTOR, CPU)
    assert optimize_for_cpu(loaded) is loaded


@pytest.mark.slow
def test_the_shipped_mobilenet_keeps_its_answers_on_real_photos() -> None:
    loaded = load_model(ROOT / "models" / "imagenet-mobilenet-v2", CPU)
    optimized = optimize_for_cpu(loaded)  # timed for real: 2.5x faster here
    assert optimized.module is not loaded.module
    spec = loaded.card.input
    batch = torch.stack([preprocess_image(to_rgb(photo(name)), spec) for name in PHOTOS])
    with torch.inference_mode():
        expected, actual = loaded.module(batch), optimized.module(batch)
    torch.testing.assert_close(actual, expected, atol=1e-3, rtol=1e-3)
    # Its card lists outputs (logits, embedding): the answers are the logits' argmax.
    assert loaded.card.outputs == ("logits", "embedding")
    assert torch.equal(actual[0].argmax(dim=1), expected[0].argmax(dim=1))
