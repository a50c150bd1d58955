"""Signed models: unsigned, untrusted and altered are told apart; the store serves the rest."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.errors import ModelLoadError
from app.main import create_app
from app.runtime.card import CARD_FILENAME, MODEL_FILENAME
from app.runtime.loader import load_model
from app.runtime.signing import (
    KeyFileError,
    generate_key_pair,
    load_trusted_keys,
    read_private_key,
    sign_model,
)
from app.runtime.signing import key_id as fingerprint
from tests.conftest import TINY_DETECTOR, TINY_MODEL, tiny_card, tiny_module
from tests.images import RED, solid
from training.cli import main as training_main
from training.core.export import export_model

CPU = torch.device("cpu")
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A folder with one trusted public key; its private half beside it as `owner.key`."""
    folder = tmp_path / "keys"
    generate_key_pair(folder / "owner")
    return folder


@pytest.fixture
def store(model_store: Path, tmp_path: Path, keys: Path) -> Path:
    """A copy of the tiny store, every model signed by the trusted key."""
    copy = tmp_path / "models"
    shutil.copytree(model_store, copy)
    for folder in sorted(path for path in copy.iterdir() if path.is_dir()):
        sign_model(folder, read_private_key(keys / "owner.key"))
    return copy


def test_a_signed_model_verifies_and_says_by_whom(store: Path, keys: Path) -> None:
    loaded = load_model(store / TINY_MODEL, CPU, load_trusted_keys([keys]))
    assert loaded.signature.status == "verified"
    assert loaded.signature.key_name == "owner"
    public = load_trusted_keys([keys / "owner.pub"])
    assert loaded.signature.key_id in public


def test_without_trusted_keys_nothing_is_checked(store: Path) -> None:
    (store / TINY_MODEL / "signature.json").unlink()
    assert load_model(store / TINY_MODEL, CPU).signature.status == "not checked"


def test_an_unsigned_model_is_refused_as_unsigned(store: Path, keys: Path) -> None:
    (store / TINY_MODEL / "signature.json").unlink()
    with pytest.raises(ModelLoadError, match="unsigned"):
        load_model(store / TINY_MODEL, CPU, load_trusted_keys([keys]))


def test_a_model_signed_by_another_key_is_refused_as_untrusted(
    store: Path, keys: Path, tmp_path: Path
) -> None:
    other, _ = generate_key_pair(tmp_path / "stranger")
    sign_model(store / TINY_MODEL, read_private_key(other))
    with pytest.raises(ModelLoadError, match="not trusted"):
        load_model(store / TINY_MODEL, CPU, load_trusted_keys([keys]))


def test_changed_weights_with_a_matching_card_hash_are_refused_as_altered(
    store: Path, keys: Path, tmp_path: Path
) -> None:
    """The operator's case: new weights, the new sha256 written into card.json, same name."""
    module = tiny_module()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(1.0)
    export_model(module, tiny_card(), tmp_path / "swapped")
    for name in (MODEL_FILENAME, CARD_FILENAME):
        shutil.copyfile(tmp_path / "swapped" / TINY_MODEL / name, store / TINY_MODEL / name)
    assert load_model(store / TINY_MODEL, CPU).card.name == TINY_MODEL  # hash checks pass
    with pytest.raises(ModelLoadError, match=r"altered: .*model\.pt and card\.json changed"):
        load_model(store / TINY_MODEL, CPU, load_trusted_keys([keys]))


def test_an_edited_card_is_refused_as_altered(store: Path, keys: Path) -> None:
    card_path = store / TINY_MODEL / CARD_FILENAME
    card = json.loads(card_path.read_text())
    card["version"] = "9.9.9"  # also in the embedded card? the signature fails first
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match=r"altered: .*card\.json changed"):
        load_model(store / TINY_MODEL, CPU, load_trusted_keys([keys]))


def test_a_forged_signature_is_refused(store: Path, keys: Path) -> None:
    path = store / TINY_MODEL / "signature.json"
    record = json.loads(path.read_text())
    record["signature"] = "A" * 86 + "=="
    path.write_text(json.dumps(record))
    with pytest.raises(ModelLoadError, match=r"altered: .*signature invalid"):
        load_model(store / TINY_MODEL, CPU, load_trusted_keys([keys]))


def test_key_files_that_cannot_work_are_named(tmp_path: Path) -> None:
    (tmp_path / "broken.pub").write_text("ssh-ed25519 not-base64")
    with pytest.raises(KeyFileError, match=r"broken\.pub"):
        load_trusted_keys([tmp_path / "broken.pub"])
    with pytest.raises(KeyFileError, match="does not exist"):
        load_trusted_keys([tmp_path / "missing.pub"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(KeyFileError, match=r"no \.pub files"):
        load_trusted_keys([tmp_path / "empty"])
    with pytest.raises(KeyFileError, match="not replacing"):
        generate_key_pair(tmp_path / "twice")
        generate_key_pair(tmp_path / "twice")


def test_the_private_key_is_owner_only(keys: Path) -> None:
    assert (keys / "owner.key").stat().st_mode & 0o077 == 0


def test_the_service_refuses_a_tampered_model_and_serves_the_others(
    store: Path, keys: Path, settings: Settings
) -> None:
    (store / TINY_DETECTOR / "signature.json").unlink()
    service = settings.model_copy(
        update={"model_dir": store, "trusted_keys": (keys,), "default_detector": "none"}
    )
    with TestClient(create_app(service)) as client:
        models = client.get("/models").json()
        assert models["signatures_checked"] is True
        assert [item["folder"] for item in models["refused"]] == [TINY_DETECTOR]
        assert "unsigned" in models["refused"][0]["reason"]
        served = {model["card"]["name"]: model for model in models["models"]}
        assert TINY_MODEL in served
        assert TINY_DETECTOR not in served
        assert served[TINY_MODEL]["signature"]["status"] == "verified"
        assert served[TINY_MODEL]["signature"]["key_name"] == "owner"
        files = [("image", ("a.png", solid(RED), "image/png"))]
        assert client.post("/classify", files=files).status_code == 200
        metrics = client.get("/metrics").text
        assert (
            f'visionserve_model_loads_total{{model="{TINY_DETECTOR}",outcome="refused"}} 1.0'
            in metrics
        )


def test_the_environment_takes_comma_separated_key_paths(
    monkeypatch: pytest.MonkeyPatch, keys: Path
) -> None:
    monkeypatch.setenv("VISION_TRUSTED_KEYS", f"{keys}, {keys / 'owner.pub'}")
    assert Settings().trusted_keys == (keys, keys / "owner.pub")


def test_sign_and_keygen_commands(store: Path, tmp_path: Path) -> None:
    assert training_main(["keygen", "--out", str(tmp_path / "cli")]) == 0
    (store / TINY_MODEL / "signature.json").unlink()
    assert training_main(["sign", "--key", str(tmp_path / "cli.key"), str(store / TINY_MODEL)]) == 0
    loaded = load_model(store / TINY_MODEL, CPU, load_trusted_keys([tmp_path / "cli.pub"]))
    assert loaded.signature.key_name == "cli"
    assert training_main(["sign", "--key", str(tmp_path / "cli.pub"), str(store)]) == 2


@pytest.mark.parametrize("name", ["fashion-products", "imagenet-mobilenet-v2", "objects-detector"])
def test_shipped_models_are_signed_by_the_project_key(name: str) -> None:
    project = load_trusted_keys([REPOSITORY / "keys"])
    loaded = load_model(REPOSITORY / "models" / name, CPU, project)
    assert loaded.signature.key_name == "visionserve-models"
    assert loaded.signature.key_id == fingerprint(next(iter(project.values())).public_key)
