"""A store with models encrypted at rest, served end to end; the undecryptable one refused."""

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.errors import ModelLoadError
from app.main import create_app
from app.runtime.encryption import ENCRYPTED_FILENAME, encrypt_model, generate_model_key
from tests.conftest import TINY_DETECTOR, TINY_MODEL
from tests.images import BLUE, RED, solid

PNG = {"content-type": "image/png"}


@pytest.fixture
def store(model_store: Path, tmp_path: Path) -> Path:
    """The tiny store with the classifier encrypted under `keys/current.mkey`, the detector
    under a key the service is not given."""
    copy = tmp_path / "models"
    shutil.copytree(model_store, copy)
    encrypt_model(copy / TINY_MODEL, generate_model_key(tmp_path / "keys" / "current.mkey"))
    encrypt_model(copy / TINY_DETECTOR, generate_model_key(tmp_path / "elsewhere" / "lost.mkey"))
    return copy


def test_an_encrypted_model_is_served_as_the_plain_one_and_the_other_refused(
    store: Path, settings: Settings, client: TestClient, tmp_path: Path
) -> None:
    encrypted = settings.model_copy(
        update={
            "model_dir": store,
            "model_keys": (tmp_path / "keys",),
            "default_detector": "none",
        }
    )
    with TestClient(create_app(encrypted)) as served:
        for colour in (RED, BLUE):
            answer = served.post("/classify", content=solid(colour), headers=PNG).json()
            plain = client.post("/classify", content=solid(colour), headers=PNG).json()
            assert answer["model"] == plain["model"]  # same name, version and plaintext sha256
            assert answer["results"][0]["predictions"] == plain["results"][0]["predictions"]
        models = served.get("/models").json()
        (refused,) = models["refused"]
        assert refused["folder"] == TINY_DETECTOR
        assert ENCRYPTED_FILENAME in refused["reason"]
        assert "which VISION_MODEL_KEYS does not hold" in refused["reason"]
        assert TINY_DETECTOR not in {model["card"]["name"] for model in models["models"]}
        metrics = served.get("/metrics").text
        assert f'visionserve_model_loads_total{{model="{TINY_DETECTOR}",outcome="refused"}}' in (
            metrics
        )


def test_the_environment_takes_comma_separated_model_key_paths(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VISION_MODEL_KEYS", f"{tmp_path / 'keys'}, {tmp_path / 'a.mkey'}")
    assert Settings().model_keys == (tmp_path / "keys", tmp_path / "a.mkey")


def test_a_missing_model_key_path_stops_the_start(settings: Settings, tmp_path: Path) -> None:
    broken = settings.model_copy(update={"model_keys": (tmp_path / "absent",)})
    with (
        pytest.raises(ModelLoadError, match="VISION_MODEL_KEYS: model key path"),
        TestClient(create_app(broken)),
    ):
        pass
