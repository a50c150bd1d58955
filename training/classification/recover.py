"""Re-export a frozen SmallCNN archive with today's outputs (logits and embedding).

`python -m training.classification.recover --model models/NAME --data builtin:fashion-mnist`

An archive exported before classifiers had an embedding output returns logits only, and its run
folder (the checkpoints) may be gone. Its weights are still in it: freezing inlined them as
constants, with batch norm folded into the convolutions. They are read back in the order the
frozen code uses them, checked against the layers of the card's architecture by shape, and
loaded into the eager model (each batch norm set to add the folded bias). The rebuilt model must
give the archive's logits on every image of the data set's test split before it is exported;
the card is kept, with the new outputs and a note of where the weights came from.
"""

import argparse
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from app.runtime.card import ModelCard
from app.runtime.loader import LoadedModel
from training.classification.artifact import UploadedImages, card_targets, load_classifier
from training.classification.data import load_split
from training.classification.models import SMALL_CNNS
from training.classification.modules import EmbeddingClassifier, NormalizedClassifier, SmallCNN
from training.core.export import export_model, framework_versions

logger = logging.getLogger(__name__)

_CONSTANT = re.compile(r"CONSTANTS\.(c\d+)")
# Logits of the rebuilt model may differ from the frozen one by float rounding only.
_PARITY_ATOL = 1e-4


class RecoveryError(RuntimeError):
    """The archive's constants do not fit the card's architecture, or the logits differ."""


def rebuild(frozen: torch.jit.ScriptModule, card: ModelCard) -> EmbeddingClassifier:
    """The eager model (logits and embedding) holding the frozen archive's weights."""
    return EmbeddingClassifier(rebuild_classifier(frozen, card), "fc").eval()


def rebuild_classifier(frozen: torch.jit.ScriptModule, card: ModelCard) -> NormalizedClassifier:
    """The eager classifier (logits) holding the frozen archive's weights."""
    if card.architecture not in SMALL_CNNS:
        raise RecoveryError(f"{card.architecture} is not a SmallCNN; only those can be recovered")
    widths, depths = SMALL_CNNS[card.architecture]
    backbone = SmallCNN(card.input.channels, len(card.labels), widths, depths)
    classifier = NormalizedClassifier(backbone, (0.0,), (1.0,))
    scale, shift, *layers = _constants_in_use_order(frozen)
    classifier.scale.copy_(scale)
    classifier.shift.copy_(shift)
    convolutions = [m for m in backbone.features.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in backbone.features.modules() if isinstance(m, nn.BatchNorm2d)]
    if len(layers) != 2 * len(convolutions) + 2 or len(norms) != len(convolutions):
        raise RecoveryError(f"{len(layers)} constants do not fit {card.architecture}")
    for convolution, norm, (weight, bias) in zip(convolutions, norms, _pairs(layers), strict=True):
        _load_folded(convolution, norm, weight, bias)
    _load(backbone.fc.weight, layers[-2])
    _load(backbone.fc.bias, layers[-1])
    return classifier.eval()


def _constants_in_use_order(frozen: torch.jit.ScriptModule) -> list[torch.Tensor]:
    code, constants = frozen.code_with_constants
    names = list(dict.fromkeys(_CONSTANT.findall(code)))
    mapping = constants.const_mapping
    return [mapping[name] for name in names]


def _pairs(layers: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layers[i], layers[i + 1]) for i in range(0, len(layers) - 2, 2)]


def _load_folded(
    convolution: nn.Conv2d, norm: nn.BatchNorm2d, weight: torch.Tensor, bias: torch.Tensor
) -> None:
    """Folded weights into the convolution; the batch norm adds the folded bias and no more."""
    _load(convolution.weight, weight)
    with torch.no_grad():
        norm.weight.fill_(1.0)
        norm.running_mean.zero_()  # type: ignore[union-attr]
        # (x - 0) / sqrt(var + eps) * 1 + bias = x + bias
        norm.running_var.fill_(1.0 - norm.eps)  # type: ignore[union-attr]
    _load(norm.bias, bias)


def _load(parameter: torch.Tensor, value: torch.Tensor) -> None:
    if parameter.shape != value.shape:
        raise RecoveryError(
            f"a constant of shape {tuple(value.shape)} where {tuple(parameter.shape)} goes"
        )
    with torch.no_grad():
        parameter.copy_(value)


def check_logits(loaded: LoadedModel, rebuilt: EmbeddingClassifier, source: str) -> float:
    """Largest logit difference on the test split, each image decoded as the service does."""
    classes, images = load_split(source, "test", workers=0)
    targets = card_targets(classes, images.targets, loaded.card)
    loader = DataLoader(UploadedImages(images, targets, loaded.card), batch_size=500)
    worst = 0.0
    with torch.inference_mode():
        for pixels, _ in tqdm(loader, desc="parity"):
            worst = max(worst, float((loaded.module(pixels) - rebuilt(pixels)[0]).abs().max()))
    if worst > _PARITY_ATOL:
        raise RecoveryError(f"rebuilt logits differ from the archive's by {worst:.3g}")
    return worst


def recovered_card(card: ModelCard, rebuilt: EmbeddingClassifier, sha256: str) -> ModelCard:
    """The same card with the new outputs, framework versions and the weights' origin."""
    training = dict(card.training or {}) | {
        "recovered_from": f"the frozen archive sha256 {sha256} (training/classification/recover.py)"
    }
    return ModelCard.model_validate(
        card.model_dump()
        | {
            "version": _next_minor(card.version),
            "framework": framework_versions(),
            "outputs": ("logits", "embedding"),
            "embedding_dim": rebuilt.embedding_dim,
            "calibration": None,
            "training": training,
            "created_at": datetime.now(UTC),
        }
    )


def _next_minor(version: str) -> str:
    major, minor, *_ = [*version.split("."), "0", "0"][:3]
    return f"{major}.{int(minor) + 1}.0" if minor.isdigit() else f"{version}+embedding"


def main(argv: list[str] | None = None) -> int:
    """Rebuild, check against the test split, export in place."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(
        prog="python -m training.classification.recover", description=__doc__
    )
    parser.add_argument("--model", type=Path, required=True, help="models/<name>")
    parser.add_argument("--data", required=True, help="the data set whose test split checks it")
    args = parser.parse_args(argv)
    loaded = load_classifier(args.model)
    try:
        rebuilt = rebuild(loaded.module, loaded.card)
        worst = check_logits(loaded, rebuilt, args.data)
    except RecoveryError as error:
        logger.error("%s: %s", args.model, error)
        return 2
    logger.info("rebuilt %s: max |logit difference| %.3g on %s test", args.model, worst, args.data)
    card = recovered_card(loaded.card, rebuilt, loaded.sha256)
    export_model(rebuilt, card, args.model.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
