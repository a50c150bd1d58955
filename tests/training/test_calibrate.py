"""Calibration end to end on real images: fitted at the end of train, by `calibrate`, served."""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.runtime.card import parse_stored_card
from app.runtime.loader import load_model
from tests.training.helpers import (
    FOLDER_CLASSES,
    fashion_mnist_installed,
    quick_config,
    write_folder,
)
from training.classification.calibrate import CalibrationRun, check_inputs
from training.classification.calibration import AUROC_MARGIN
from training.classification.decision_plots import REJECTION_PNG, RELIABILITY_PNG
from training.classification.trainer import train
from training.classification.unknowns import load_unknown
from training.cli import main
from training.core.datacheck import DatasetError

pytestmark = pytest.mark.skipif(
    not fashion_mnist_installed(), reason="dataset-fashion-mnist is not installed (`make data`)"
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ 40, val/ 60 and test/ 25 real Fashion-MNIST images per class (4 classes)."""
    root = tmp_path_factory.mktemp("calibration-folder")
    write_folder(root / "train", "train", 40)
    write_folder(root / "val", "train", 60, offset=40)
    write_folder(root / "test", "test", 25)
    return root


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 real hand-written digits (scikit-learn's scans) as PNG files: none of the classes."""
    root = tmp_path_factory.mktemp("digits")
    digits = load_unknown("builtin:digits")
    for index in range(200):
        (root / f"digit-{index:04d}.png").write_bytes(digits.read_bytes(index))
    return root


@pytest.fixture(scope="module")
def model_dir(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on `folder` and calibrated by train on its 240 validation images."""
    tmp_path = tmp_path_factory.mktemp("calibrated")
    result = train(quick_config(folder, tmp_path, epochs=6), "pytest")
    assert result.model_dir is not None
    return result.model_dir


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_calibrate(target: Path, folder: Path, *options: str) -> int:
    """`python -m training calibrate` on `target` with `folder` as its data, quietly."""
    common = ["--model", str(target), "--data", str(folder), "--workers", "0", "--no-progress"]
    return main(["calibrate", *common, *options])


def test_train_calibrates_on_the_validation_split(model_dir: Path) -> None:
    loaded = load_model(model_dir, torch.device("cpu"))
    card = loaded.card
    assert card.outputs == ("logits", "embedding", "embedding_map", "class_map")
    calibration = card.calibration
    assert calibration is not None
    assert calibration.data.endswith("val (240 images)")
    assert calibration.images == 240
    assert calibration.temperature > 0
    assert calibration.ece_after <= calibration.ece_before
    open_set = calibration.open_set
    assert (open_set.method, open_set.k, open_set.references) == ("knn", 10, 160)
    assert open_set.unknown_data is None and "known held-out data only" in open_set.note
    assert open_set.tpr_known == pytest.approx(0.95, abs=0.01)
    assert loaded.references is not None
    assert loaded.references.shape == (160, card.embedding_dim)
    assert (model_dir / RELIABILITY_PNG).stat().st_size > 10_000


def test_calibrate_with_unknown_photos_and_serve_decisions(
    model_dir: Path, folder: Path, digits_folder: Path, tmp_path: Path
) -> None:
    store = tmp_path / "models"
    shutil.copytree(model_dir, store / model_dir.name)
    target = store / model_dir.name
    before = sha256(target / "model.pt")
    options = ["--unknown", str(digits_folder), "--target-tpr", "0.9"]
    assert run_calibrate(target, folder, *options) == 0
    stored = parse_stored_card((target / "card.json").read_text())
    assert stored.sha256 == sha256(target / "model.pt") != before
    assert stored.calibration is not None
    open_set = stored.calibration.open_set
    assert open_set.unknown_data == f"{digits_folder} (200 images)"
    assert set(open_set.compared) == {"msp", "energy", "knn@1", "knn@10", "knn@50"}
    assert open_set.auroc is not None
    assert open_set.auroc >= max(open_set.compared.values()) - AUROC_MARGIN
    assert open_set.fpr_unknown is not None
    assert open_set.target_tpr == 0.9

    settings = Settings(
        model_dir=store,
        default_classifier=stored.name,
        default_detector=stored.name,
        autotune_batch_size=False,
        max_images_per_request=32,
    )
    digits = sorted(digits_folder.iterdir())[:30]
    clothes = (
        sorted((folder / "test" / "bag").iterdir())[:15]
        + sorted((folder / "test" / "trouser").iterdir())[:15]
    )
    with TestClient(create_app(settings)) as client:
        decided = {
            name: [
                result["decision"]
                for result in client.post(
                    "/classify",
                    files=[("image", (p.name, p.read_bytes(), "image/png")) for p in paths],
                ).json()["results"]
            ]
            for name, paths in (("digits", digits), ("clothes", clothes))
        }
    # The card's own measured rates, with room for 30 images: most digits are unknown, few
    # garments are.
    assert decided["digits"].count("unknown") >= 18
    assert decided["clothes"].count("unknown") <= 6


def test_too_few_held_out_images_stop_before_fitting(
    model_dir: Path, folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / model_dir.name
    shutil.copytree(model_dir, target)
    before = sha256(target / "model.pt")
    with caplog.at_level(logging.ERROR):
        code = run_calibrate(target, folder, "--split", "test")
    assert code == 2
    assert "has 100 images; calibration needs at least 200 held-out images" in caplog.text
    assert sha256(target / "model.pt") == before


def test_an_unknown_folder_holding_known_images_is_refused(
    model_dir: Path, folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / model_dir.name
    shutil.copytree(model_dir, target)
    unknown = tmp_path / "others"
    shutil.copytree(folder / "val" / "bag", unknown)
    with caplog.at_level(logging.ERROR):
        code = run_calibrate(target, folder, "--unknown", str(unknown))
    assert code == 2
    assert "60 of the unknown images are also images of the known classes" in caplog.text


def test_held_out_images_of_a_single_class_are_refused(model_dir: Path, folder: Path) -> None:
    from training.classification.data import load_split  # noqa: PLC0415

    classes, images = load_split(str(folder), "val", workers=0)
    only_bags = images.select([i for i, t in enumerate(images.targets) if classes[t] == "bag"])
    run = CalibrationRun(
        model_dir=model_dir, classes=classes, held_out=only_bags, held_out_name="bags", train=None
    )
    card = load_model(model_dir, torch.device("cpu")).card
    with pytest.raises(DatasetError, match="holds images of 1 class"):
        check_inputs(run, card)


def test_evaluate_reports_calibration_and_open_set_figures(
    model_dir: Path, folder: Path, digits_folder: Path, tmp_path: Path
) -> None:
    report, figures = tmp_path / "report", tmp_path / "figures.json"
    arguments = [
        "evaluate",
        "--model",
        str(model_dir),
        "--data",
        str(folder),
        "--split",
        "test",
        "--unknown",
        str(digits_folder),
        "--report",
        str(report),
        "--json",
        str(figures),
        "--workers",
        "0",
    ]
    assert main(arguments) == 0
    decisions = json.loads(figures.read_text())["decisions"]
    assert decisions["calibrated"] is True
    assert decisions["images"] == 25 * len(FOLDER_CLASSES)
    assert set(decisions["known"]["decisions"]) == {"match", "uncertain", "unknown"}
    unknown = decisions["unknown"][str(digits_folder)]
    assert unknown["images"] == 200
    assert 0.0 <= unknown["fpr"] <= 1.0
    assert set(unknown["auroc_by_method"]) == {"msp", "energy", "knn@1", "knn@10", "knn@50"}
    for name in (RELIABILITY_PNG, REJECTION_PNG):
        assert (report / name).stat().st_size > 10_000
