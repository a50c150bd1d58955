"""The exporter writes verified, self-describing archives and refuses a scripted mismatch."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from app.runtime.loader import load_model
from tests.conftest import tiny_card, tiny_module
from training.export import ExportError, export_model, parity_inputs
from training.models import build_classifier
from training.modules import NormalizedClassifier


class DiffersWhenScripted(nn.Module):
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits = pixels.mean(dim=(2, 3))
        if torch.jit.is_scripting():
            return logits + 1.0
        return logits


def test_export_writes_an_archive_the_loader_accepts(tmp_path: Path) -> None:
    card = tiny_card()
    directory = export_model(tiny_module(), card, tmp_path)
    loaded = load_model(directory, torch.device("cpu"))
    assert loaded.card == card
    stored = json.loads((directory / "card.json").read_text())
    assert stored["sha256"] == loaded.sha256
    inputs = parity_inputs(loaded.card)
    torch.testing.assert_close(loaded.module(inputs), tiny_module()(inputs))


def test_export_refuses_when_scripted_outputs_differ(tmp_path: Path) -> None:
    module = NormalizedClassifier(DiffersWhenScripted(), (0.0,) * 3, (1.0,) * 3)
    with pytest.raises(ExportError, match="differ from eager"):
        export_model(module, tiny_card(), tmp_path)
    assert not (tmp_path / tiny_card().name).exists()


def test_any_torchvision_classifier_exports_with_its_preprocessing_inside(tmp_path: Path) -> None:
    built = build_classifier("mobilenet_v3_small", "none", ("shoe", "bag"))
    normalization = built.input.normalization
    assert normalization is not None
    module = NormalizedClassifier(built.model, normalization.mean, normalization.std)
    card = tiny_card(
        name="shoes", architecture="mobilenet_v3_small", labels=built.labels, input=built.input
    )
    directory = export_model(module, card, tmp_path)
    loaded = load_model(directory, torch.device("cpu"))
    assert loaded.module(parity_inputs(card)).shape == (2, 2)


def test_unknown_architecture_is_named() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'resnet9000'"):
        build_classifier("resnet9000", "none", ("a",))
