"""int8 archives: the card's precision must match the archive, and oneDNN leaves them alone."""

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from app.errors import ModelLoadError
from app.runtime.loader import load_model
from app.runtime.optimize import optimized_model
from tests.quantized import (
    calibration_batches,
    export_tiny_int8,
    int8_spec,
    tiny_fp32_card,
    tiny_fp32_module,
)
from training.classification.quantize import quantized_classifier
from training.core.export import export_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_int8(tmp_path_factory.mktemp("int8"))


def test_an_int8_archive_loads_with_its_precision(int8_dir: Path) -> None:
    loaded = load_model(int8_dir, CPU)
    assert loaded.card.precision == "int8"
    assert loaded.card.quantization == int8_spec()


def test_an_int8_card_on_an_fp32_archive_is_refused(tmp_path: Path) -> None:
    module = tiny_fp32_module()
    card = tiny_fp32_card(module, "claims-int8").model_copy(
        update={"precision": "int8", "quantization": int8_spec()}
    )
    directory = export_model(module, card, tmp_path)
    with pytest.raises(ModelLoadError, match="card says int8, the archive runs no quantized"):
        load_model(directory, CPU)


def test_an_fp32_card_on_an_int8_archive_is_refused(tmp_path: Path) -> None:
    fp32 = tiny_fp32_module()
    int8 = quantized_classifier(fp32, calibration_batches())
    directory = export_model(int8, tiny_fp32_card(fp32, "claims-fp32"), tmp_path, atol=1e-2)
    with pytest.raises(ModelLoadError, match=r"card says fp32, the archive runs quantized \(int8"):
        load_model(directory, CPU)


def test_an_int8_card_needs_its_quantization_record() -> None:
    card = tiny_fp32_card(tiny_fp32_module())
    with pytest.raises(ValidationError, match="`quantization` is required for int8"):
        type(card).model_validate(card.model_dump() | {"precision": "int8"})
    with pytest.raises(ValidationError, match="`quantization` is required for int8"):
        type(card).model_validate(card.model_dump() | {"quantization": int8_spec().model_dump()})


def test_the_onednn_pass_skips_int8_models(int8_dir: Path) -> None:
    loaded = load_model(int8_dir, CPU)
    assert (
        optimized_model(loaded) == "oneDNN applies to fp32 models; int8 runs its quantized kernels"
    )
