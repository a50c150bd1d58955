"""Named, scoped API keys: each route family and model allowed or refused, expiry, names in
the access line and metrics, the plain key list, admin, and a key file changed while serving."""

import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from httpx2 import Response

from app.api.deps import require_admin
from app.config import Settings
from app.main import create_app
from app.security.keyfile import add_key, remove_key
from app.security.keys import Scope
from tests.conftest import TINY_DETECTOR, TINY_MODEL
from tests.galleries.helpers import EMBEDDER, export_embedders
from tests.images import RED, solid

PNG = {"content-type": "image/png"}
IMAGE: dict[str, Any] = {"content": solid(RED), "headers": PNG}
KEYS: dict[str, tuple[list[Scope], list[str]]] = {
    "classifier": (["classify"], ["*"]),
    "detector": (["detect"], ["*"]),
    "segmenter": (["segment"], ["*"]),
    "reader": (["galleries:read"], ["*"]),
    "writer": (["galleries:read", "galleries:write"], ["*"]),
    "writer-colors": (["galleries:write"], [TINY_MODEL]),
    "v2": (["v2"], ["*"]),
    "v2-boxes": (["v2"], [TINY_DETECTOR]),
    "models": (["models"], ["*"]),
    "boxes-only": (["classify", "detect"], ["tiny-b*"]),
    "operator": (["admin"], ["*"]),
}


@dataclass(frozen=True, kw_only=True)
class Keyed:
    client: TestClient
    keys: dict[str, str]
    path: Path

    def call(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> Response:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["x-api-key"] = self.keys.get(key, key)
        return self.client.request(method, path, headers=headers, **kwargs)


@pytest.fixture(scope="module")
def access_store(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny classifier, detector and segmenter, and the tiny embedder for galleries."""
    store = tmp_path_factory.mktemp("access-models")
    for folder in model_store.iterdir():
        shutil.copytree(folder, store / folder.name)
    export_embedders(store)
    return store


def serve(settings: Settings) -> TestClient:
    """The app with one extra route behind the admin scope (the real admin routes are elsewhere)."""
    app = create_app(settings)

    async def probe() -> dict[str, str]:
        return {"status": "admin"}

    app.add_api_route("/admin/probe", probe, dependencies=[Depends(require_admin)])
    return TestClient(app)


@pytest.fixture
def keyed(settings: Settings, access_store: Path, tmp_path: Path) -> Iterator[Keyed]:
    path = tmp_path / "keys.json"
    keys = {name: add_key(path, name, scopes, models) for name, (scopes, models) in KEYS.items()}
    keys["expired"] = add_key(
        path, "expired", ["classify"], expires=datetime(2020, 1, 1, tzinfo=UTC)
    )
    served = settings.model_copy(
        update={
            "model_dir": access_store,
            "gallery_dir": tmp_path / "galleries",
            "api_keys_file": path,
            "api_keys_reload_s": 0.001,
        }
    )
    with serve(served) as client:
        yield Keyed(client=client, keys=keys, path=path)


@dataclass(frozen=True, kw_only=True)
class Family:
    """A route family's probe: a request, a key with its scope and one without."""

    method: str
    path: str
    options: dict[str, Any]
    allowed: str
    denied: str
    scope: str


FAMILIES = [
    Family(
        method="POST",
        path="/classify",
        options=IMAGE,
        allowed="classifier",
        denied="detector",
        scope="classify",
    ),
    Family(
        method="POST",
        path="/detect",
        options=IMAGE,
        allowed="detector",
        denied="classifier",
        scope="detect",
    ),
    Family(
        method="POST",
        path="/segment",
        options=IMAGE,
        allowed="segmenter",
        denied="classifier",
        scope="segment",
    ),
    Family(
        method="GET",
        path="/galleries",
        options={},
        allowed="reader",
        denied="classifier",
        scope="galleries:read",
    ),
    Family(
        method="PUT",
        path="/galleries/shelf",
        options={"json": {"model": EMBEDDER}},
        allowed="writer",
        denied="reader",
        scope="galleries:write",
    ),
    Family(
        method="GET",
        path=f"/v2/models/{TINY_MODEL}",
        options={},
        allowed="v2",
        denied="classifier",
        scope="v2",
    ),
    Family(
        method="GET",
        path="/models",
        options={},
        allowed="models",
        denied="classifier",
        scope="models",
    ),
    Family(
        method="GET",
        path="/admin/probe",
        options={},
        allowed="operator",
        denied="models",
        scope="admin",
    ),
]


@pytest.mark.parametrize("family", FAMILIES, ids=[family.path for family in FAMILIES])
def test_each_route_family_needs_its_scope(keyed: Keyed, family: Family) -> None:
    method, path, options = family.method, family.path, family.options
    assert keyed.call(method, path, family.allowed, **options).status_code in (200, 201)
    refused = keyed.call(method, path, family.denied, **options)
    assert refused.status_code == 403
    assert keyed.keys[family.denied] not in refused.text
    message = f"The API key {family.denied!r} lacks the {family.scope!r} scope"
    error = refused.json()["error"]
    if path.startswith("/v2"):  # the Open Inference Protocol's error shape: "code: message"
        assert error.startswith(f"forbidden: {message}")
    else:
        assert error["code"] == "forbidden"
        assert error["message"].startswith(message)
        assert error["details"]["missing_scope"] == family.scope
        assert error["details"]["key"] == family.denied
    assert keyed.call(method, path, **options).status_code == 401


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/classify?top_k=0", "classifier"),
        ("/detect?max_detections=0", "detector"),
        ("/segment?format=gif", "segmenter"),
        ("/galleries/not%20a%20name/match", "reader"),
        ("/galleries/not%20a%20name/products/p/references", "writer"),
    ],
)
def test_a_request_without_a_key_is_401_before_its_parameters_are_checked(
    keyed: Keyed, path: str, key: str
) -> None:
    # Without a key a caller learns nothing about the route's parameters; with one, the 422.
    assert keyed.call("POST", path, **IMAGE).status_code == 401
    assert keyed.call("POST", path, key, **IMAGE).status_code == 422


def test_gallery_reads_and_matches_need_the_read_scope(keyed: Keyed) -> None:
    assert (
        keyed.call("PUT", "/galleries/shelf", "writer", json={"model": EMBEDDER}).status_code == 201
    )
    assert keyed.call("GET", "/galleries/shelf", "reader").status_code == 200
    assert keyed.call("POST", "/galleries/shelf/match", "reader", **IMAGE).status_code == 200
    refused = keyed.call("DELETE", "/galleries/shelf", "reader")
    assert refused.json()["error"]["details"]["missing_scope"] == "galleries:write"
    assert keyed.call("DELETE", "/galleries/shelf", "writer").status_code == 204


def test_a_key_uses_only_its_models(keyed: Keyed) -> None:
    refused = keyed.call("POST", "/classify", "boxes-only", **IMAGE)  # the default: tiny-colors
    assert refused.status_code == 403
    assert refused.json()["error"]["details"] == {
        "key": "boxes-only",
        "model": TINY_MODEL,
        "models": ["tiny-b*"],
    }
    assert keyed.call("POST", "/detect", "boxes-only", **IMAGE).status_code == 200
    # Past the model check, the usual answers: a detector asked to classify.
    wrong = keyed.call("POST", f"/classify?model={TINY_DETECTOR}", "boxes-only", **IMAGE)
    assert wrong.json()["error"]["code"] == "wrong_task"
    created = keyed.call("PUT", "/galleries/other", "writer-colors", json={"model": EMBEDDER})
    assert created.status_code == 403
    assert created.json()["error"]["details"]["model"] == EMBEDDER
    infer = keyed.call("POST", f"/v2/models/{TINY_MODEL}/infer", "v2-boxes", json={})
    assert infer.status_code == 403
    assert "may not use model" in infer.json()["error"]
    allowed = keyed.call("POST", f"/v2/models/{TINY_DETECTOR}/infer", "v2-boxes", json={})
    assert allowed.status_code == 400  # through the model check, to the (empty) body


def test_a_gallery_bound_to_a_model_the_key_may_not_use_is_refused(keyed: Keyed) -> None:
    keyed.call("PUT", "/galleries/shelf", "writer", json={"model": EMBEDDER})
    matcher = add_key(keyed.path, "matcher", ["galleries:read"], [TINY_MODEL])
    time.sleep(0.01)  # past API_KEYS_RELOAD_S: the file is read again
    answer = keyed.call("POST", "/galleries/shelf/match", matcher, **IMAGE)
    assert answer.status_code == 403
    assert answer.json()["error"]["details"]["model"] == EMBEDDER


def test_an_expired_key_is_refused_saying_so(keyed: Keyed) -> None:
    answer = keyed.call("POST", "/classify", "expired", **IMAGE)
    assert answer.status_code == 401
    error = answer.json()["error"]
    assert error["code"] == "unauthorized"
    assert "'expired' expired at 2020-01-01" in error["message"]
    assert keyed.keys["expired"] not in answer.text


def test_the_key_name_is_in_the_access_line_and_metrics(
    keyed: Keyed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.access")
    assert keyed.call("POST", "/classify", "classifier", **IMAGE).status_code == 200
    (line,) = [record for record in caplog.records if record.name == "app.access"]
    fields = line.__dict__["fields"]
    assert fields["key_name"] == "classifier"
    assert keyed.keys["classifier"] not in str(fields)
    keyed.call("POST", "/classify", "detector", **IMAGE)
    metrics = keyed.client.get("/metrics").text
    assert 'visionserve_http_requests_total{key="classifier",route="/classify",status="200"}' in (
        metrics
    )
    assert 'visionserve_http_requests_total{key="detector",route="/classify",status="403"}' in (
        metrics
    )
    assert keyed.keys["classifier"] not in metrics


def test_keys_added_and_revoked_in_the_file_apply_without_a_restart(keyed: Keyed) -> None:
    late = add_key(keyed.path, "late", ["classify"])
    time.sleep(0.01)
    assert keyed.call("POST", "/classify", late, **IMAGE).status_code == 200
    remove_key(keyed.path, "late")
    time.sleep(0.01)
    assert keyed.call("POST", "/classify", late, **IMAGE).status_code == 401
    keyed.path.write_text("{not json")  # a broken edit: the keys read before stay valid
    time.sleep(0.01)
    assert keyed.call("POST", "/classify", "classifier", **IMAGE).status_code == 200


def test_the_plain_key_list_still_works_for_everything_but_admin(settings: Settings) -> None:
    plain = settings.model_copy(update={"api_keys": frozenset({"plain-secret"})})
    with serve(plain) as client:
        headers = {"authorization": "Bearer plain-secret"}
        answer = client.post("/classify", content=solid(RED), headers=PNG | headers)
        assert answer.status_code == 200
        assert client.get("/models", headers=headers).status_code == 200
        assert client.post("/classify", **IMAGE).status_code == 401
        admin = client.get("/admin/probe", headers=headers)
        assert admin.status_code == 403
        assert admin.json()["error"]["details"]["missing_scope"] == "admin"
        metrics = client.get("/metrics").text
        assert 'key="unnamed-' in metrics and "plain-secret" not in metrics


def test_an_open_service_serves_everyone_but_closes_admin(settings: Settings) -> None:
    with serve(settings) as client:
        assert client.post("/classify", **IMAGE).status_code == 200
        assert client.get("/models").status_code == 200
        answer = client.get("/admin/probe")
        assert answer.status_code == 403
        assert "has no API keys" in answer.json()["error"]["message"]


def test_metrics_and_docs_take_their_own_scopes(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    scraper = add_key(path, "scraper", ["metrics"])
    reader = add_key(path, "reader", ["docs"])
    protected = settings.model_copy(
        update={"api_keys_file": path, "protect_docs_and_metrics": True}
    )
    with serve(protected) as client:
        assert client.get("/metrics", headers={"x-api-key": scraper}).status_code == 200
        assert client.get("/metrics", headers={"x-api-key": reader}).status_code == 403
        assert client.get("/docs", headers={"x-api-key": reader}).status_code == 200
        assert client.get("/docs", headers={"x-api-key": scraper}).status_code == 403
