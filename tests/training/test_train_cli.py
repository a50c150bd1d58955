"""`python -m training train`: each task's flags only; the store is never replaced silently."""

import dataclasses
import json
from pathlib import Path

import pytest

from tests.conftest import ROOT
from training.classification.config import TrainConfig
from training.cli import main
from training.core.checkpoint import Checkpoint, TrainState, save_checkpoint
from training.core.config import ConfigError
from training.core.publish import claim_store_name, next_version
from training.train_cli import train_command

CLASSIFIER_ONLY = [
    ["--deterministic"],
    ["--balance", "weights"],
    ["--freeze-backbone-epochs", "1"],
    ["--augment", "small"],
    ["--label-smoothing", "0.1"],
    ["--random-erasing", "0.2"],
    ["--channels-last", "on"],
    ["--color-mode", "L"],
]


@pytest.mark.parametrize("flag", CLASSIFIER_ONLY, ids=lambda flag: flag[0])
def test_detector_training_refuses_classifier_flags(flag: list[str], tmp_path: Path) -> None:
    arguments = ["--data", str(tmp_path), "--arch", "fasterrcnn_mobilenet_v2", *flag]
    with pytest.raises(ConfigError, match=f"{flag[0]} applies to classification training"):
        train_command(arguments)


@pytest.mark.parametrize(
    ("flag", "owners"),
    [(["--scenes", "10"], "segmentation and detection"), (["--fpn-channels", "16"], "detection")],
)
def test_classifier_training_refuses_detector_flags(
    flag: list[str], owners: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=f"{flag[0]} applies to {owners} training"):
        train_command(["--data", str(tmp_path), *flag])


def test_unknown_flag_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["train", "--data", str(tmp_path), "--epoch", "3"]) == 2
    assert "unrecognized argument --epoch" in caplog.text


def test_resume_refuses_recipe_changes(tmp_path: Path) -> None:
    checkpoint = Checkpoint(
        model={},
        optimizer={},
        scaler={},
        state=TrainState(),
        config={},
        arch="smallcnn",
        labels=("a", "b"),
        input_spec={},
    )
    save_checkpoint(checkpoint, tmp_path / "last.pt")
    arguments = ["--resume", str(tmp_path / "last.pt"), "--epochs", "9", "--lr", "0.1"]
    with pytest.raises(ConfigError, match="--lr: a resumed run keeps its checkpoint's recipe"):
        train_command(arguments)


def test_next_version_bumps_only_when_not_newer() -> None:
    assert next_version(None, "1.0.0") == "1.0.0"
    assert next_version("1.0.0", "1.0.0") == "1.0.1"
    assert next_version("1.2.9", "1.0.0") == "1.2.10"
    assert next_version("1.0.0", "2.0.0") == "2.0.0"
    assert next_version("beta", "beta") == "beta.1"


def test_an_existing_model_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    directory = tmp_path / "models" / "shoes"
    directory.mkdir(parents=True)
    card = json.loads((ROOT / "models" / "fashion-products" / "card.json").read_text())
    (directory / "card.json").write_text(json.dumps(card | {"name": "shoes"}))
    config = TrainConfig(data="d", name="shoes", store=tmp_path / "models")
    with pytest.raises(ConfigError, match=r"already holds shoes 1.2.0; pass --overwrite"):
        claim_store_name(config)
    claimed = claim_store_name(dataclasses.replace(config, overwrite=True))
    assert claimed.model_version == "1.2.1"
    fresh = dataclasses.replace(config, name="boots")
    assert claim_store_name(fresh) == fresh
    assert claim_store_name(dataclasses.replace(config, export=False)).model_version == "1.0.0"


def test_versions_side_by_side_are_never_claimed_twice(tmp_path: Path) -> None:
    store = tmp_path / "models"
    card = json.loads((ROOT / "models" / "fashion-products" / "card.json").read_text())
    for version in ("1.0.0", "1.3.0"):
        folder = store / f"shoes@{version}"
        folder.mkdir(parents=True)
        (folder / "card.json").write_text(json.dumps(card | {"name": "shoes", "version": version}))
    config = TrainConfig(data="d", name="shoes", store=store)  # version 1.0.0: held beside
    with pytest.raises(ConfigError, match=r"shoes@1.0.0 already holds shoes 1.0.0"):
        claim_store_name(config)
    assert claim_store_name(dataclasses.replace(config, overwrite=True)).model_version == "1.3.1"
    newer = dataclasses.replace(config, model_version="2.0.0")
    assert claim_store_name(newer) == newer  # a new version: models/shoes/ beside the others
