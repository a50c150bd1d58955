"""`export --model DIR --quantize int8`: measured against fp32, refused past the bound."""

import logging
from pathlib import Path

import pytest
import torch

from app.runtime.card import parse_stored_card
from app.runtime.inference import split_outputs
from app.runtime.loader import load_model
from tests.conftest import TINY_DETECTOR
from tests.quantized import (
    TINY_FP32,
    TINY_INT8,
    calibration_batches,
    export_tiny_fp32,
    export_tiny_int8,
    tiny_fp32_module,
)
from tests.training.helpers import write_folder
from training.classification.artifact import evaluate_artifact
from training.classification.quantize import INT8_PARITY_ATOL, quantized_classifier
from training.cli import main
from training.core.export import parity_inputs
from training.core.quantize import QuantizationError, quantize_int8

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def fp32_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the tiny fp32 SmallCNN."""
    store = tmp_path_factory.mktemp("int8-store")
    export_tiny_fp32(store)
    return store


def quantize_args(store: Path, data: Path, *extra: str) -> list[str]:
    return [
        "export",
        "--model",
        str(store / TINY_FP32),
        "--quantize",
        "int8",
        "--data",
        str(data),
        "--out",
        str(store),
        "--calibration-images",
        "64",
        "--workers",
        "0",
        *extra,
    ]


def test_the_card_records_precision_and_the_accuracy_measured(
    fp32_store: Path, fashion_folder: Path
) -> None:
    # 60 held-out images: one flip is 1.7 points, so this run allows any loss.
    assert main(quantize_args(fp32_store, fashion_folder, "--max-accuracy-loss", "100")) == 0
    card = parse_stored_card((fp32_store / TINY_INT8 / "card.json").read_text())
    assert card.precision == "int8" and card.quantization is not None
    spec = card.quantization
    fp32 = evaluate_artifact(fp32_store / TINY_FP32, str(fashion_folder), workers=0)
    int8 = evaluate_artifact(fp32_store / TINY_INT8, str(fashion_folder), workers=0)
    assert spec.top1_fp32 == pytest.approx(fp32.metrics.top1)
    assert spec.top1_int8 == pytest.approx(int8.metrics.top1)
    assert card.metrics[0].values["top1"] == pytest.approx(int8.metrics.top1)
    agreement = (fp32.outputs.logits.argmax(1) == int8.outputs.logits.argmax(1)).float().mean()
    assert spec.agreement == pytest.approx(agreement.item())
    assert spec.images == 60 and spec.calibration_images == 64
    assert spec.reference_sha256 == fp32.model.sha256
    assert "train" in spec.calibration_data and "test" in spec.data
    assert card.calibration is None  # fitted to fp32 outputs: re-fit with `calibrate`


def test_export_is_refused_past_the_bound_and_writes_nothing(
    fp32_store: Path, fashion_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = quantize_args(fp32_store, fashion_folder, "--max-accuracy-loss", "-100")
    with caplog.at_level(logging.ERROR):
        assert main([*args, "--name", "refused-int8"]) == 2
    assert "past the bound of -100.0" in caplog.text
    assert not (fp32_store / "refused-int8").exists()


def test_a_detector_is_refused_with_the_reason(
    model_store: Path, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    args = ["export", "--model", str(model_store / TINY_DETECTOR), "--quantize", "int8"]
    with caplog.at_level(logging.ERROR):
        assert main([*args, "--data", "unused", "--out", str(tmp_path)]) == 2
    assert "covers classifiers only" in caplog.text
    assert not any(tmp_path.iterdir())


def test_the_int8_archive_matches_its_int8_reference_within_the_tolerance(
    tmp_path: Path,
) -> None:
    loaded = load_model(export_tiny_int8(tmp_path), CPU)
    reference = quantized_classifier(tiny_fp32_module(), calibration_batches())
    images = parity_inputs(loaded.card)
    assert isinstance(images, torch.Tensor)
    with torch.inference_mode():
        want, _ = split_outputs(reference(images), loaded.card, len(images))
        got, _ = split_outputs(loaded.module(images), loaded.card, len(images))
        fp32, _ = split_outputs(tiny_fp32_module()(images), loaded.card, len(images))
    assert (want - got).abs().max() <= INT8_PARITY_ATOL
    # int8, not a copy of fp32: close to it, but not equal.
    assert 0 < (fp32 - got).abs().max() < 0.1 * fp32.abs().max()


def test_quantizing_without_calibration_images_is_refused() -> None:
    with pytest.raises(QuantizationError, match="no calibration images"):
        quantize_int8(tiny_fp32_module(), [])


@pytest.fixture(scope="module")
def larger_folder(tmp_path_factory: pytest.TempPathFactory, fashion_folder: Path) -> Path:
    """train/ 40, val/ 60, test/ 15 real images per class: enough held-out images to calibrate."""
    root = tmp_path_factory.mktemp("int8-calibration-folder")
    write_folder(root / "train", "train", 40)
    write_folder(root / "val", "train", 60, offset=40)
    write_folder(root / "test", "test", 15)
    return root


def test_decisions_are_refitted_on_the_int8_outputs(fp32_store: Path, larger_folder: Path) -> None:
    name = "refit-int8"
    export = quantize_args(fp32_store, larger_folder, "--max-accuracy-loss", "100")
    assert main([*export, "--name", name]) == 0
    calibrate = ["calibrate", "--model", str(fp32_store / name), "--data", str(larger_folder)]
    assert main([*calibrate, "--workers", "0", "--no-progress"]) == 0
    loaded = load_model(fp32_store / name, CPU)
    assert loaded.card.precision == "int8" and loaded.card.quantization is not None
    assert loaded.card.calibration is not None
    assert loaded.card.calibration.images == 240
