"""Half precision at load: autocast, the parity check and its refusals, on the CPU with bf16.

CPU autocast runs bf16 through the very code CUDA runs fp16 and bf16 through, so the cast,
the comparison with fp32 and the fallback are tested everywhere; tests/api/test_gpu.py runs
both half types on a GPU.
"""

from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import ValidationError
from torch import nn

from app.config import Settings
from app.main import create_app
from app.runtime.inference import ClassifyInput, make_classify_runner
from app.runtime.loader import LoadedModel, load_model
from app.runtime.precision import (
    BOUNDS,
    choose_precision,
    precision_for_device,
    probe_images,
    served_precision,
)
from app.runtime.segmentation import SegmentInput, make_segment_runner
from tests.conftest import TINY_DETECTOR, TINY_MODEL, tiny_card
from tests.segmenters import TINY_SEGMENTER
from training.classification.modules import NormalizedClassifier
from training.core.export import export_model

CPU = torch.device("cpu")


class TinyConvNet(nn.Module):
    """A small seeded convolutional classifier: its convolutions and head run in bf16."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.head = nn.Linear(8, 3)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(pixels))
        return logits


class TieBreaker(nn.Module):
    """Tells class 0 from class 1 by a weight of 1000 against 1001: bf16 rounds both to 1000
    (its spacing there is 4), so the half model ties where fp32 decides and the check refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1000.0, 0, 0], [1001.0, 0, 0], [0, 0, 0]]))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(pixels.mean(dim=(2, 3)))
        return logits


def _exported(store: Path, name: str, backbone: nn.Module) -> LoadedModel:
    module = NormalizedClassifier(backbone, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    folder = export_model(module, tiny_card(name, architecture=name), store)
    return load_model(folder, CPU)


def test_bf16_within_bounds_is_served_in_bf16(tmp_path: Path) -> None:
    loaded = _exported(tmp_path, "tiny-conv", TinyConvNet())
    half, choice = choose_precision(loaded, "bf16")
    assert (choice.requested, choice.served) == ("bf16", "bf16")
    assert served_precision(half) == "bf16" and half.autocast_dtype == torch.bfloat16
    assert choice.parity is not None and choice.parity.bounds == BOUNDS["bf16"]
    assert choice.parity.top1_agreement == 1.0
    assert 0.0 < choice.parity.max_score_difference <= BOUNDS["bf16"].max_score_difference
    assert loaded.autocast_dtype is None  # the fp32 model is left as it was


def test_the_half_batch_function_gives_fp32_scores_close_to_fp32(tmp_path: Path) -> None:
    loaded = _exported(tmp_path, "tiny-conv", TinyConvNet())
    half, _ = choose_precision(loaded, "bf16")
    items = [ClassifyInput(pixels, 3) for pixels in probe_images(loaded.card, 4)]
    for want, got in zip(
        make_classify_runner(loaded)(items), make_classify_runner(half)(items), strict=True
    ):
        assert [class_id for class_id, _ in want.ranking] == [c for c, _ in got.ranking]
        for (_, want_score), (_, got_score) in zip(want.ranking, got.ranking, strict=True):
            assert isinstance(got_score, float)
            assert got_score == pytest.approx(want_score, abs=BOUNDS["bf16"].max_score_difference)


def test_a_flipped_top1_is_refused_and_served_in_fp32(tmp_path: Path) -> None:
    loaded = _exported(tmp_path, "tie-breaker", TieBreaker())
    served, choice = choose_precision(loaded, "bf16")
    assert served is loaded and served_precision(served) == "fp32"
    assert (choice.requested, choice.served) == ("bf16", "fp32")
    assert choice.reason.startswith("not bf16: top-1 agrees on")
    assert choice.parity is not None
    assert choice.parity.top1_agreement < BOUNDS["bf16"].min_top1_agreement


def test_fp32_is_served_as_exported(model_store: Path) -> None:
    loaded = load_model(model_store / TINY_MODEL, CPU)
    served, choice = choose_precision(loaded, "fp32")
    assert served is loaded
    assert (choice.served, choice.reason, choice.parity) == ("fp32", "as exported", None)


def test_detectors_are_served_in_fp32_with_the_reason(model_store: Path) -> None:
    loaded = load_model(model_store / TINY_DETECTOR, CPU)
    served, choice = choose_precision(loaded, "fp16")
    assert served is loaded and choice.served == "fp32"
    assert "classifiers and segmenters only" in choice.reason


def test_segmenters_are_checked_on_their_pixels(model_store: Path) -> None:
    loaded = load_model(model_store / TINY_SEGMENTER, CPU)
    half, choice = choose_precision(loaded, "bf16")
    assert choice.served == "bf16" and choice.parity is not None
    assert choice.parity.top1_agreement == 1.0
    pixels = probe_images(loaded.card, 1)[0]
    item = SegmentInput(pixels, 50, 40)
    (want,) = make_segment_runner(loaded)([item])
    (got,) = make_segment_runner(half)([item])
    assert (want.class_map == got.class_map).all()


def test_the_setting_applies_on_cuda_only() -> None:
    assert precision_for_device("fp16", CPU) == "fp32"
    assert precision_for_device("bf16", torch.device("cuda")) == "bf16"
    assert precision_for_device("fp32", torch.device("cuda")) == "fp32"


def test_settings_accept_the_precisions_and_decode_modes_only() -> None:
    settings = Settings(cuda_precision="bf16", gpu_decode="auto")
    assert (settings.cuda_precision, settings.gpu_decode) == ("bf16", "auto")
    assert (Settings().cuda_precision, Settings().gpu_decode) == ("fp32", "off")
    with pytest.raises(ValidationError):
        Settings(cuda_precision="int8")
    with pytest.raises(ValidationError):
        Settings(gpu_decode="yes")


def test_models_show_the_precision_served(settings: Settings) -> None:
    on_cpu = settings.model_copy(update={"device": "cpu", "cuda_precision": "bf16"})
    with TestClient(create_app(on_cpu)) as client:
        body = client.get(f"/models/{TINY_MODEL}").json()
    # The setting is CUDA's: a CPU serves fp32 (through oneDNN) and says so at start-up.
    assert body["precision"] == {
        "requested": "fp32",
        "served": "fp32",
        "reason": "as exported",
        "parity": None,
    }
