"""Re-export a shipped SmallCNN with activation maps, keeping its calibration.

`python -m training.classification.reexport --model models/NAME --data builtin:fashion-mnist`

The frozen archive's weights are read back (training/classification/recover.py) into the eager
model, which is exported as an ExplainingClassifier: the same logits and embedding plus the
activation maps that explain=true draws. Both must equal the archive's on every image of the
data set's test split, so the card's calibration, kNN references and similarity threshold still
hold; they are carried over with the new outputs.
"""

import argparse
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from app.runtime.card import ModelCard
from app.runtime.loader import LoadedModel, load_model
from training.classification.artifact import UploadedImages, card_targets, load_classifier
from training.classification.data import load_split
from training.classification.modules import ExplainingClassifier, explaining, outputs_of
from training.classification.recover import RecoveryError, rebuild_classifier
from training.core.export import export_model, framework_versions, rewrite_archive

logger = logging.getLogger(__name__)

_PARITY_ATOL = 1e-4


def explaining_copy(loaded: LoadedModel) -> ExplainingClassifier:
    """The archive's model, rebuilt eager with activation-map outputs."""
    module = explaining(rebuild_classifier(loaded.module, loaded.card))
    if module is None:
        raise RecoveryError(f"{loaded.card.architecture} has no pooling + linear head")
    return module


def check_outputs(loaded: LoadedModel, module: ExplainingClassifier, source: str) -> float:
    """Largest logit or embedding difference on the test split, decoded as the service does."""
    classes, images = load_split(source, "test", workers=0)
    targets = card_targets(classes, images.targets, loaded.card)
    batches = DataLoader(UploadedImages(images, targets, loaded.card), batch_size=500)
    worst = 0.0
    with torch.inference_mode():
        for pixels, _ in tqdm(batches, desc="parity"):
            old, new = loaded.module(pixels), module(pixels)
            for before, after in zip(old[:2], new[:2], strict=True):
                worst = max(worst, float((before - after).abs().max()))
    if worst > _PARITY_ATOL:
        raise RecoveryError(f"rebuilt outputs differ from the archive's by {worst:.3g}")
    return worst


def explaining_card(card: ModelCard, module: ExplainingClassifier, sha256: str) -> ModelCard:
    """The same card (calibration included) with the new outputs and a note of the origin."""
    training = dict(card.training or {}) | {
        "activation_maps_added_to": f"the archive sha256 {sha256} (classification/reexport.py)"
    }
    major, minor, *_ = [*card.version.split("."), "0", "0"][:3]
    return ModelCard.model_validate(
        card.model_dump()
        | {
            "version": f"{major}.{int(minor) + 1}.0" if minor.isdigit() else card.version + "+maps",
            "framework": framework_versions(),
            "outputs": outputs_of(module),
            "training": training,
            "created_at": datetime.now(UTC),
        }
    )


def reexport(model_dir: Path, source: str) -> Path:
    """Rebuild, check on the test split, write the new archive over the old one."""
    loaded = load_classifier(model_dir)
    module = explaining_copy(loaded)
    worst = check_outputs(loaded, module, source)
    logger.info("%s: outputs equal to %.3g on %s test", model_dir, worst, source)
    card = explaining_card(loaded.card, module, loaded.sha256)
    # The exporter checks eager against scripted; the kNN references go in with the full card.
    bare = card.model_copy(update={"calibration": None})
    export_model(module, bare, model_dir.parent)
    exported = load_model(model_dir, torch.device("cpu"))
    return rewrite_archive(exported.module, card, model_dir.parent, references=loaded.references)


def main(argv: list[str] | None = None) -> int:
    """Command line entry."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m training.classification.reexport")
    parser.add_argument("--model", type=Path, required=True, help="models/<name>")
    parser.add_argument("--data", required=True, help="the data set whose test split checks it")
    args = parser.parse_args(argv)
    try:
        path = reexport(args.model, args.data)
    except RecoveryError as error:
        logger.error("%s: %s", args.model, error)
        return 2
    logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
