"""CPU optimisation is applied only where it gives the loaded model's answers."""

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from app.imaging import to_rgb
from app.runtime.card import InputSpec, Normalization
from app.runtime.inference import split_outputs
from app.runtime.loader import LoadedModel, load_model
from app.runtime.optimize import Forward, choose_runtime, optimize_for_cpu
from app.runtime.preprocessing import preprocess_image
from app.runtime.tuning import TrialPlan
from tests.conftest import ROOT, TINY_DETECTOR, tiny_card
from tests.images import photo
from training.classification.modules import NormalizedClassifier

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


class SimulatedClock:
    """A clock that moves only by what `forward` says each pass took: no test is timed."""

    def __init__(self, ms_plain: float, ms_onednn: float) -> None:
        self.now = 0.0
        self.ms = {False: ms_plain, True: ms_onednn}

    def __call__(self) -> float:
        return self.now

    def forward(self) -> Forward:
        def run(module: torch.jit.ScriptModule, images: torch.Tensor) -> object:
            output = module(images)  # the real pass; only its duration is simulated
            self.now += self.ms["mkldnn" in str(module.graph)] / 1000
            return output

        return run

    def plan(self) -> TrialPlan:
        return TrialPlan(min_rounds=5, max_rounds=5, budget_s=0.0, clock=self)


def test_a_conv_classifier_is_optimised_and_answers_the_same() -> None:
    loaded = conv_bn_classifier()
    clock = SimulatedClock(ms_plain=2.0, ms_onednn=1.0)
    choice = choose_runtime(loaded, clock.plan(), clock.forward())
    optimized = choice.model
    assert choice.runtime == "oneDNN"
    assert choice.trial is not None
    assert choice.trial.relative_cost == pytest.approx({"as loaded": 2.0, "oneDNN": 1.0})
    assert optimized.module is not loaded.module
    assert (optimized.card, optimized.sha256) == (loaded.card, loaded.sha256)
    assert "mkldnn" in str(optimized.module.graph)
    assert "mkldnn" not in str(loaded.module.graph)  # the fallback stays as loaded
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    with torch.inference_mode():
        torch.testing.assert_close(optimized.module(images), loaded.module(images))


@pytest.mark.parametrize("ms_onednn", [2.0, 1.85, 2.5])
def test_an_optimisation_not_clearly_faster_is_not_kept(ms_onednn: float) -> None:
    loaded = conv_bn_classifier()
    clock = SimulatedClock(ms_plain=2.0, ms_onednn=ms_onednn)  # at most 8% faster: in the margin
    choice = choose_runtime(loaded, clock.plan(), clock.forward())
    assert choice.model is loaded
    assert choice.runtime == "as loaded"
    assert choice.reason.startswith("oneDNN not clearly faster (as loaded: x")
    assert "5 rounds, margin 10%" in choice.reason


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
    optimized = optimize_for_cpu(loaded)  # timed for real: 2.5x faster here, far past the margin
    assert optimized.module is not loaded.module
    spec = loaded.card.input
    batch = torch.stack([preprocess_image(to_rgb(photo(name)), spec) for name in PHOTOS])
    with torch.inference_mode():
        expected = split_outputs(loaded.module(batch), loaded.card, len(batch))[0]
        actual = split_outputs(optimized.module(batch), loaded.card, len(batch))[0]
    torch.testing.assert_close(actual, expected, atol=1e-3, rtol=1e-3)
    # Its card lists its logits first (then the embedding and the activation maps that
    # galleries and explanations use): the answers are the logits' argmax.
    assert loaded.card.outputs[:2] == ("logits", "embedding")
    assert torch.equal(actual.argmax(dim=1), expected.argmax(dim=1))
