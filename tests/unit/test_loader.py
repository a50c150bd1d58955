"""The loader serves verified archives only."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from app.errors import ModelLoadError
from app.runtime.loader import discover_model_dirs, load_model
from tests.conftest import TINY_MODEL

CPU = torch.device("cpu")


@pytest.fixture
def model_dir(model_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / TINY_MODEL
    shutil.copytree(model_store / TINY_MODEL, copy)
    return copy


def test_loads_a_verified_model(model_dir: Path) -> None:
    loaded = load_model(model_dir, CPU)
    assert loaded.card.name == TINY_MODEL
    assert loaded.sha256 == json.loads((model_dir / "card.json").read_text())["sha256"]
    output = loaded.module(torch.zeros((2, 3, 32, 32), dtype=torch.uint8))
    assert output.shape == (2, 3)


def test_refuses_a_modified_archive(model_dir: Path) -> None:
    with (model_dir / "model.pt").open("ab") as archive:
        archive.write(b"\0")
    with pytest.raises(ModelLoadError, match=r"sha256 is .* but card.json says"):
        load_model(model_dir, CPU)


def test_refuses_a_card_that_disagrees_with_the_embedded_one(model_dir: Path) -> None:
    card_path = model_dir / "card.json"
    card = json.loads(card_path.read_text())
    card["labels"] = ["cat", "dog", "bird"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match=r"disagrees .* on labels"):
        load_model(model_dir, CPU)


def test_refuses_an_invalid_card(model_dir: Path) -> None:
    (model_dir / "card.json").write_text('{"name": "x"}')
    with pytest.raises(ModelLoadError, match="not a valid card"):
        load_model(model_dir, CPU)


def test_refuses_an_archive_that_is_not_torchscript(model_dir: Path) -> None:
    garbage = b"not a zip archive"
    (model_dir / "model.pt").write_bytes(garbage)
    card_path = model_dir / "card.json"
    card = json.loads(card_path.read_text())
    card["sha256"] = hashlib.sha256(garbage).hexdigest()  # the hash agrees; the archive is bad
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="not a loadable TorchScript archive"):
        load_model(model_dir, CPU)


def test_refuses_a_lone_archive(model_dir: Path) -> None:
    (model_dir / "card.json").unlink()
    with pytest.raises(ModelLoadError, match=r"no card\.json beside model\.pt"):
        load_model(model_dir, CPU)


def test_folder_must_be_named_after_the_model(model_dir: Path) -> None:
    renamed = model_dir.rename(model_dir.parent / "other-name")
    with pytest.raises(ModelLoadError, match="folder name"):
        load_model(renamed, CPU)


def test_discovers_model_folders_only(model_dir: Path) -> None:
    (model_dir.parent / "notes").mkdir()
    assert discover_model_dirs(model_dir.parent) == [model_dir]
    with pytest.raises(ModelLoadError, match="does not exist"):
        discover_model_dirs(model_dir.parent / "missing")
