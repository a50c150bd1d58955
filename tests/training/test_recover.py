"""Recovering a frozen SmallCNN archive: the rebuilt model gives the archive's logits."""

from pathlib import Path

import pytest
import torch

from app.runtime.card import InputSpec, ModelCard, Normalization
from app.runtime.loader import load_model
from training.classification.models import create_classifier
from training.classification.modules import NormalizedClassifier
from training.classification.recover import RecoveryError, rebuild
from training.core.export import export_model, framework_versions


def frozen_small_cnn(tmp_path: Path, arch: str = "smallcnn_large") -> Path:
    """A randomly initialised SmallCNN with trained-looking batch norm, exported logits-only."""
    torch.manual_seed(0)
    created = create_classifier(arch, 4, "none", in_channels=1)
    for module in created.backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial statistics to fold
            module.running_mean.uniform_(-0.5, 0.5)  # type: ignore[union-attr]
            module.running_var.uniform_(0.5, 2.0)  # type: ignore[union-attr]
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model = NormalizedClassifier(created.backbone, (0.3,), (0.35,))
    card = ModelCard(
        name="frozen",
        version="1.0.0",
        task="classify",
        architecture=arch,
        framework=framework_versions(),
        labels=("a", "b", "c", "d"),
        input=InputSpec(
            color_mode="L",
            resize_mode="stretch",
            resize_size=28,
            normalization=Normalization(mean=(0.3,), std=(0.35,)),
        ),
    )
    return export_model(model, card, tmp_path)


@pytest.mark.parametrize("arch", ["smallcnn", "smallcnn_large"])
def test_the_rebuilt_model_gives_the_frozen_logits(tmp_path: Path, arch: str) -> None:
    loaded = load_model(frozen_small_cnn(tmp_path, arch), torch.device("cpu"))
    rebuilt = rebuild(loaded.module, loaded.card)
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    with torch.inference_mode():
        logits, embeddings = rebuilt(images)
        assert (logits - loaded.module(images)).abs().max() < 1e-4
    assert embeddings.shape == (16, rebuilt.embedding_dim)


def test_an_archive_that_does_not_fit_the_architecture_is_refused(tmp_path: Path) -> None:
    loaded = load_model(frozen_small_cnn(tmp_path, "smallcnn"), torch.device("cpu"))
    wrong = loaded.card.model_copy(update={"architecture": "smallcnn_large"})
    with pytest.raises(RecoveryError, match="do not fit smallcnn_large"):
        rebuild(loaded.module, wrong)
