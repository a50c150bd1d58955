"""The store layout (name@version folders, version order, aliases file) and reader epochs."""

import shutil
import threading
from pathlib import Path

import pytest
import torch

from app.errors import ModelLoadError
from app.runtime.loader import load_model
from app.runtime.readers import ReaderEpochs
from app.runtime.store import ModelRef, read_aliases, version_key, write_aliases
from tests.conftest import TINY_MODEL

CPU = torch.device("cpu")


def test_refs_parse_name_and_version() -> None:
    assert ModelRef.parse("tiny") == ModelRef(name="tiny", version=None)
    assert ModelRef.parse("tiny@1.2.0") == ModelRef(name="tiny", version="1.2.0")
    assert str(ModelRef.parse("tiny@1.2.0")) == "tiny@1.2.0"


def test_versions_order_naturally() -> None:
    versions = ["1.10.0", "1.9.0", "2", "1.9.0-rc1", "0.0.1"]
    assert sorted(versions, key=version_key) == ["0.0.1", "1.9.0", "1.9.0-rc1", "1.10.0", "2"]


def test_a_versioned_folder_must_carry_its_cards_version(model_store: Path, tmp_path: Path) -> None:
    good = tmp_path / f"{TINY_MODEL}@0.0.1"
    shutil.copytree(model_store / TINY_MODEL, good)
    assert load_model(good, CPU).card.version == "0.0.1"
    wrong = tmp_path / f"{TINY_MODEL}@0.0.2"
    shutil.copytree(model_store / TINY_MODEL, wrong)
    with pytest.raises(ModelLoadError, match=r"the folder says version '0\.0\.2'"):
        load_model(wrong, CPU)
    other = tmp_path / "other@0.0.1"
    shutil.copytree(model_store / TINY_MODEL, other)
    with pytest.raises(ModelLoadError, match="folder name must be the card's name"):
        load_model(other, CPU)


def test_aliases_file_round_trips_and_refuses_garbage(tmp_path: Path) -> None:
    assert read_aliases(tmp_path) == {}
    write_aliases(tmp_path, {"b": "2", "a": "1"})
    assert read_aliases(tmp_path) == {"a": "1", "b": "2"}
    assert [path.name for path in tmp_path.iterdir()] == ["aliases.json"]  # no temporary left
    (tmp_path / "aliases.json").write_text('["a"]')
    with pytest.raises(ModelLoadError, match="JSON object"):
        read_aliases(tmp_path)


def test_old_readers_are_waited_for_and_new_ones_are_not() -> None:
    epochs = ReaderEpochs()
    before = epochs.enter()
    ended = epochs.advance()  # a switch: `before` may hold the old set
    after = epochs.enter()
    assert not epochs.wait_until_done(ended, 0.05)
    releaser = threading.Timer(0.1, epochs.leave, args=(before,))
    releaser.start()
    assert epochs.wait_until_done(ended, 5.0)  # `after` (a later epoch) does not hold it back
    assert epochs.in_flight(ended) == 0 and epochs.in_flight(after) == 1
    epochs.leave(after)
