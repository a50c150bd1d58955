"""The exporter writes verified, self-describing archives and refuses a scripted mismatch."""

import json
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import get_model

from app.runtime.loader import load_model
from tests.conftest import tiny_card, tiny_module
from training.classification.models import build_classifier, create_classifier
from training.classification.modules import NormalizedClassifier
from training.cli import main
from training.core.config import ConfigError
from training.core.export import ExportError, export_model, parity_inputs


class DiffersWhenScripted(nn.Module):
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits = pixels.mean(dim=(2, 3))
        # torch's stubs do not re-export is_scripting, which TorchScript recognises by name.
        if torch.jit.is_scripting():  # type: ignore[attr-defined]
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


def test_missing_imagenet_weights_name_the_ones_here_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth").write_bytes(b"")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def offline(url: str, *args: object, **kwargs: object) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    arguments = ["--arch", "resnet18", "--weights", "imagenet", "--name", "r", "--out"]
    assert main(["export", *arguments, str(tmp_path / "models")]) == 2
    [message] = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert message.startswith("ResNet18_Weights.IMAGENET1K_V1 is neither in torch.hub's cache")
    assert "ImageNet weights here offline: mobilenet_v2 IMAGENET1K_V1 (" in message
    with pytest.raises(ConfigError, match="here offline: mobilenet_v2 IMAGENET1K_V1"):
        create_classifier("resnet18", 5, "imagenet")


def test_a_state_dict_that_does_not_fit_is_refused_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.save(get_model("mobilenet_v3_small", num_classes=2).state_dict(), tmp_path / "sd.pt")
    (tmp_path / "labels.txt").write_text("shoe\nbag\nhat\n")
    arguments = ["--arch", "mobilenet_v3_small", "--weights", str(tmp_path / "sd.pt")]
    arguments += ["--labels", str(tmp_path / "labels.txt"), "--name", "x", "--out", str(tmp_path)]
    assert main(["export", *arguments]) == 2
    [message] = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert message.startswith(f"--weights {tmp_path / 'sd.pt'} does not fit mobilenet_v3_small")
    assert "size mismatch for classifier.3.weight" in message
    assert "\n" not in message
    assert not (tmp_path / "x").exists()
