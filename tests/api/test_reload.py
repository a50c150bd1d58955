"""Model updates without downtime: reload, versions side by side, aliases, rollback, admin guard."""

import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from app.api.state import AppState
from app.config import Settings
from app.errors import NotReady
from app.main import create_app
from app.runtime import autotune
from app.runtime import reload as reload_module
from app.runtime.card import CARD_FILENAME
from app.runtime.loader import LoadedModel
from app.runtime.registry import ServedModel
from app.security.keyfile import write_known_key
from app.security.keys import SCOPES
from tests.conftest import TINY_DETECTOR, TINY_MODEL, tiny_card, tiny_module
from tests.galleries.helpers import EMBEDDER, embedder, export_embedders, similarity
from tests.images import RED, solid
from training.core.export import export_model

KEY = "admin-key"
ADMIN = {"X-API-Key": KEY}
PNG = {"content-type": "image/png"}


def publish(store: Path, version: str, folder: str | None = None) -> Path:
    """Export the tiny classifier as `version` into `store/folder` (default `name@version`)."""
    staging = store.parent / f"staging-{version}-{time.monotonic_ns()}"
    exported = export_model(tiny_module(), tiny_card(version=version), staging)
    target = store / (folder or f"{TINY_MODEL}@{version}")
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(exported, target)
    return target


@pytest.fixture
def store(model_store: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny store that a test may change."""
    copy = tmp_path / "models"
    shutil.copytree(model_store, copy)
    return copy


@pytest.fixture
def admin_settings(settings: Settings, store: Path, tmp_path: Path) -> Settings:
    """The tiny store's settings with an API key holding every scope, admin included."""
    key_file = tmp_path / "keys.json"
    write_known_key(key_file, "ops", KEY, SCOPES)
    return settings.model_copy(update={"model_dir": store, "api_keys_file": key_file})


@pytest.fixture
def admin(admin_settings: Settings) -> Iterator[TestClient]:
    """The app on the private store, every request carrying the key."""
    with TestClient(create_app(admin_settings), headers=ADMIN) as client:
        yield client


def classify(client: TestClient, model: str | None = None) -> Response:
    """Classify one red image with `model` (or the default)."""
    query = f"?model={model}" if model else ""
    return client.post(f"/classify{query}", content=solid(RED), headers=PNG)


def answered_by(client: TestClient, model: str | None = None) -> str:
    """The version that answered a classification."""
    answer = classify(client, model)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["model"]["version"])


def app_state(client: TestClient) -> AppState:
    """The running app's state."""
    state: AppState = client.app.state.services  # type: ignore[attr-defined]
    return state


def refs(changes: list[dict[str, Any]]) -> list[str]:
    """The `model` of each change in a reload answer."""
    return sorted(str(change["model"]) for change in changes)


def test_a_new_version_is_added_beside_the_old(admin: TestClient, store: Path) -> None:
    publish(store, "0.0.2")
    body = admin.post("/admin/models/reload").json()
    assert refs(body["added"]) == [f"{TINY_MODEL}@0.0.2"]
    assert body["replaced"] == body["removed"] == body["refused"] == []
    assert len(body["kept"]) == 3
    assert body["defaults"][TINY_MODEL] == f"{TINY_MODEL}@0.0.2"
    assert answered_by(admin) == "0.0.2"  # a bare name means the highest version
    assert answered_by(admin, f"{TINY_MODEL}@0.0.1") == "0.0.1"
    listing = admin.get("/models").json()
    versions = {
        m["model"]: m["default"] for m in listing["models"] if m["card"]["name"] == TINY_MODEL
    }
    assert versions == {f"{TINY_MODEL}@0.0.1": False, f"{TINY_MODEL}@0.0.2": True}
    assert admin.get(f"/models/{TINY_MODEL}@0.0.1").json()["folder"] == TINY_MODEL


def test_unchanged_models_keep_their_batcher(admin: TestClient, store: Path) -> None:
    registry = app_state(admin).registry
    before = {served.ref: served.batcher for served in registry.models}
    publish(store, "0.0.3", folder=TINY_MODEL)  # replace the folder's content
    body = admin.post("/admin/models/reload").json()
    assert [(c["previous_model"], c["model"]) for c in body["replaced"]] == [
        (f"{TINY_MODEL}@0.0.1", f"{TINY_MODEL}@0.0.3")
    ]
    after = {served.ref: served.batcher for served in registry.models}
    assert f"{TINY_MODEL}@0.0.1" not in after
    for ref, batcher in after.items():
        if not ref.startswith(TINY_MODEL):
            assert batcher is before[ref]
    assert answered_by(admin) == "0.0.3"
    assert registry.wait_retired(10.0)
    old = before[f"{TINY_MODEL}@0.0.1"]
    with pytest.raises(NotReady, match="not accepting work"), old.reserve(1):  # it stopped
        pass


def test_removed_models_stop_being_served(admin: TestClient, store: Path) -> None:
    shutil.rmtree(store / TINY_DETECTOR)
    body = admin.post("/admin/models/reload").json()
    assert [change["previous_model"] for change in body["removed"]] == [f"{TINY_DETECTOR}@0.0.1"]
    assert body["removed"][0]["model"] is None
    answer = admin.post(f"/detect?model={TINY_DETECTOR}", content=solid(RED), headers=PNG)
    assert answer.json()["error"]["code"] == "model_not_found"


def test_a_version_that_fails_to_verify_leaves_the_old_one_serving(
    admin: TestClient, store: Path
) -> None:
    folder = publish(store, "0.0.4", folder=TINY_MODEL)
    card = folder / CARD_FILENAME
    card.write_text(card.read_text().replace('"sha256": "', '"sha256": "0', 1))
    body = admin.post("/admin/models/reload").json()
    assert [(r["folder"], r["still_serving"]) for r in body["refused"]] == [
        (TINY_MODEL, f"{TINY_MODEL}@0.0.1")
    ]
    assert "card.json" in body["refused"][0]["reason"]
    assert answered_by(admin) == "0.0.1"
    listing = admin.get("/models").json()
    assert listing["refused"][0]["still_serving"] == f"{TINY_MODEL}@0.0.1"
    metrics = admin.get("/metrics").text
    assert f'visionserve_model_loads_total{{model="{TINY_MODEL}",outcome="refused"}} 1.0' in metrics


def test_an_empty_store_is_refused_and_everything_keeps_serving(
    admin: TestClient, store: Path
) -> None:
    for folder in list(store.iterdir()):
        shutil.rmtree(folder)
    answer = admin.post("/admin/models/reload")
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "reload_refused"
    assert answered_by(admin) == "0.0.1"


def test_metrics_follow_reloads(admin: TestClient, store: Path) -> None:
    publish(store, "0.0.5", folder=TINY_MODEL)
    admin.post("/admin/models/reload")
    text = admin.get("/metrics").text
    assert f'visionserve_model_loads_total{{model="{TINY_MODEL}",outcome="loaded"}} 2.0' in text
    info = [line for line in text.splitlines() if line.startswith("visionserve_model_info{")]
    served = [line for line in info if f'model="{TINY_MODEL}"' in line]
    assert len(served) == 1 and 'version="0.0.5"' in served[0]


def test_alias_pins_a_version_and_rollback_is_immediate(admin: TestClient, store: Path) -> None:
    publish(store, "0.0.2")
    admin.post("/admin/models/reload")
    assert answered_by(admin) == "0.0.2"
    pinned = admin.post("/admin/models/alias", json={"name": TINY_MODEL, "version": "0.0.1"})
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["default"] == f"{TINY_MODEL}@0.0.1"
    assert pinned.json()["saved_to"] == str(store / "aliases.json")
    assert answered_by(admin) == "0.0.1"  # at once, nothing reloaded
    assert admin.get("/models").json()["aliases"] == {TINY_MODEL: "0.0.1"}
    admin.post("/admin/models/reload")
    assert answered_by(admin) == "0.0.1"  # the pin is in the store: reloads keep it
    unpinned = admin.post("/admin/models/alias", json={"name": TINY_MODEL, "version": None})
    assert unpinned.json()["pinned"] is None
    assert answered_by(admin) == "0.0.2"


def test_alias_to_a_version_not_served_is_404(admin: TestClient) -> None:
    answer = admin.post("/admin/models/alias", json={"name": TINY_MODEL, "version": "9.9"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "model_not_found"
    assert classify(admin, f"{TINY_MODEL}@9.9").json()["error"]["code"] == "model_not_found"


def test_aliases_file_pins_at_start_up(admin_settings: Settings, store: Path) -> None:
    publish(store, "0.0.2")
    (store / "aliases.json").write_text(f'{{"{TINY_MODEL}": "0.0.1"}}')
    with TestClient(create_app(admin_settings), headers=ADMIN) as client:
        assert answered_by(client) == "0.0.1"


def test_admin_is_closed_on_a_service_without_keys(client: TestClient) -> None:
    answer = client.post("/admin/models/reload")
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"
    assert answer.json()["error"]["details"]["missing_scope"] == "admin"


def test_admin_needs_a_valid_key(admin_settings: Settings) -> None:
    with TestClient(create_app(admin_settings)) as client:
        wrong = client.post("/admin/models/reload", headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "unauthorized"
        assert client.post("/admin/models/alias", json={}).status_code == 401


Runner = Callable[[list[Any]], Sequence[Any]]


def test_a_request_in_flight_finishes_on_the_old_model(
    admin_settings: Settings, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real_runner = autotune.runner_for

    def held_runner(loaded: LoadedModel) -> Runner:
        run = real_runner(loaded)

        def held(items: list[Any]) -> Sequence[Any]:
            if loaded.card.version == "0.0.1":
                gate.wait(30)  # the old version's forward pass waits for the test
            return run(items)

        return held

    monkeypatch.setattr(reload_module, "runner_for", held_runner)  # the batchers' runner
    with TestClient(create_app(admin_settings), headers=ADMIN) as client:
        registry = app_state(client).registry
        old: ServedModel = registry.get(TINY_MODEL)
        answers: list[Response] = []
        waiting = threading.Thread(target=lambda: answers.append(classify(client)))
        waiting.start()
        deadline = time.monotonic() + 10
        while old.batcher.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        publish(store, "0.0.2", folder=TINY_MODEL)
        body = client.post("/admin/models/reload").json()
        assert refs(body["replaced"]) == [f"{TINY_MODEL}@0.0.2"]
        assert answered_by(client) == "0.0.2"  # new requests: the new model, at once
        assert not registry.wait_retired(0.3)  # the old one waits for its request
        gate.set()
        waiting.join(10)
        assert answers[0].status_code == 200
        assert answers[0].json()["model"]["version"] == "0.0.1"
        assert registry.wait_retired(10.0)


def test_metrics_and_health_answer_while_models_load(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real_tune = autotune.tune_model

    def held_tune(loaded: LoadedModel, policy: Any) -> Any:
        gate.wait(30)
        return real_tune(loaded, policy)

    monkeypatch.setattr(reload_module, "tune_model", held_tune)
    with TestClient(create_app(settings, load_in_background=True)) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
        for path in ("/readyz", "/models"):
            answer = client.get(path)
            assert (answer.status_code, answer.json()["error"]["code"]) == (503, "not_ready")
        assert classify(client).json()["error"]["code"] == "not_ready"
        gate.set()
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert answered_by(client) == "0.0.1"


def test_a_background_load_that_fails_is_reported(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    empty = settings.model_copy(update={"model_dir": tmp_path / "empty"})
    with TestClient(create_app(empty, load_in_background=True)) as client:
        lifecycle = app_state(client).lifecycle
        deadline = time.monotonic() + 10
        while lifecycle.failed is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lifecycle.failed is not None and "no servable model" in lifecycle.failed
        assert client.get("/readyz").status_code == 503


def test_the_store_watch_loads_a_new_version(admin_settings: Settings, store: Path) -> None:
    watching = admin_settings.model_copy(update={"model_watch_s": 0.1})
    with TestClient(create_app(watching), headers=ADMIN) as client:
        publish(store, "0.0.2")
        deadline = time.monotonic() + 15
        while answered_by(client) != "0.0.2" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert answered_by(client) == "0.0.2"


def test_a_malformed_aliases_file_refuses_the_reload(admin: TestClient, store: Path) -> None:
    publish(store, "0.0.2")
    (store / "aliases.json").write_text("{not json")
    answer = admin.post("/admin/models/reload")
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "reload_refused")
    assert "aliases.json" in answer.json()["error"]["message"]
    assert answered_by(admin) == "0.0.1"  # nothing switched


def test_a_gallery_stays_on_the_version_it_was_built_with(tmp_path: Path) -> None:
    store = tmp_path / "models"
    export_embedders(store)
    key_file = tmp_path / "keys.json"
    write_known_key(key_file, "ops", KEY, SCOPES)
    settings = Settings(
        model_dir=store,
        gallery_dir=tmp_path / "galleries",
        default_classifier=EMBEDDER,
        autotune_batch_size=False,
        optimize_cpu=False,
        api_keys_file=key_file,
    )
    red = [("image", ("red.png", solid(RED), "image/png"))]
    with TestClient(create_app(settings), headers=ADMIN) as client:
        assert client.put("/galleries/shop", json={"model": EMBEDDER}).status_code in (200, 201)
        client.post("/galleries/shop/products/red/references", files=red)
        card = tiny_card(
            EMBEDDER,
            version="0.0.2",
            outputs=("logits", "embedding"),
            embedding_dim=3,
            similarity=similarity(),
        )
        exported = export_model(embedder(), card, tmp_path / "staging")
        shutil.move(exported, store / f"{EMBEDDER}@0.0.2")
        assert client.post("/admin/models/reload").status_code == 200
        assert answered_by(client) == "0.0.2"  # the name now means the new version
        answer = client.post("/galleries/shop/match", files=red)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"]["version"] == "0.0.1"  # the gallery's own archive


def test_an_alias_is_held_in_memory_when_the_store_cannot_keep_it(
    admin: TestClient, store: Path
) -> None:
    publish(store, "0.0.2")
    admin.post("/admin/models/reload")
    (store / "aliases.json").mkdir()  # not a file: it cannot be read or replaced
    answer = admin.post("/admin/models/alias", json={"name": TINY_MODEL, "version": "0.0.1"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["saved_to"] is None and answer.json()["not_saved_reason"]
    assert answered_by(admin) == "0.0.1"
