"""/models, /healthz, /readyz, /metrics, /docs."""

from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.errors import ModelLoadError
from app.main import create_app
from tests.images import RED, solid


def test_models_lists_cards_with_hash_and_device(client: TestClient) -> None:
    body = client.get("/models").json()
    assert body["device"].startswith("cpu")
    assert body["default_classifier"] == "tiny-colors"
    assert body["default_detector"] == "tiny-boxes"
    assert body["default_segmenter"] == "tiny-regions"
    models = {model["card"]["name"]: model for model in body["models"]}
    assert set(models) == {"tiny-boxes", "tiny-colors", "tiny-regions"}
    assert models["tiny-regions"]["card"]["task"] == "segment"
    model = models["tiny-colors"]
    assert models["tiny-boxes"]["card"]["detection"]["score_threshold"] == 0.5
    assert model["card"]["labels"] == ["red", "green", "blue"]
    assert model["card"]["input"]["crop_size"] == 32
    assert model["device"] == "cpu"
    assert len(model["sha256"]) == 64


def test_one_model(client: TestClient) -> None:
    assert client.get("/models/tiny-colors").json()["card"]["name"] == "tiny-colors"
    assert client.get("/models/nope").json()["error"]["code"] == "model_not_found"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200


def test_not_ready_without_the_lifespan(settings: Settings) -> None:
    client = TestClient(create_app(settings))  # no `with`: the lifespan never ran
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "not_ready"
    assert answer.headers["retry-after"] == "2"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/models"), ("GET", "/models/tiny-colors"), ("POST", "/segment"), ("POST", "/detect")],
)
def test_every_state_dependency_is_not_ready_without_the_lifespan(
    settings: Settings, method: str, path: str
) -> None:
    # The state, settings and registry dependencies each check readiness themselves.
    client = TestClient(create_app(settings))
    answer = client.request(method, path, content=solid(RED), headers={"content-type": "image/png"})
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "not_ready"


def test_metrics_count_requests_and_images(client: TestClient) -> None:
    client.post("/classify", content=solid(RED), headers={"content-type": "image/png"})
    client.post("/classify", content=b"nope", headers={"content-type": "image/png"})
    text = client.get("/metrics").text
    assert 'visionserve_images_total{model="tiny-colors",outcome="ok"} 1.0' in text
    assert 'visionserve_images_total{model="tiny-colors",outcome="invalid_image"} 1.0' in text
    assert 'visionserve_http_requests_total{key="-",route="/classify",status="400"} 1.0' in text


def test_metrics_time_each_stage_and_name_the_served_versions(client: TestClient) -> None:
    files = [("image", (f"{n}.png", solid(RED), "image/png")) for n in range(3)]
    assert client.post("/classify", files=files).status_code == 200
    text = client.get("/metrics").text
    served = client.get("/models/tiny-colors").json()
    assert 'visionserve_queue_duration_seconds_count{model="tiny-colors"} 3.0' in text
    assert 'visionserve_decode_duration_seconds_count{model="tiny-colors"} 3.0' in text
    assert 'visionserve_batch_duration_seconds_count{model="tiny-colors"}' in text
    assert 'visionserve_model_loads_total{model="tiny-colors",outcome="loaded"} 1.0' in text
    info = (
        f'visionserve_model_info{{model="tiny-colors",sha256="{served["sha256"]}",'
        f'task="classify",version="{served["card"]["version"]}"}} 1.0'
    )
    assert info in text


def test_request_id_is_echoed(client: TestClient) -> None:
    answer = client.get("/healthz", headers={"x-request-id": "abc123"})
    assert answer.headers["x-request-id"] == "abc123"
    assert len(client.get("/healthz").headers["x-request-id"]) == 32


def test_openapi_documents_both_body_shapes(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/classify"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "image/*"}


def test_a_tampered_store_refuses_to_start(settings: Settings, tmp_path: Path) -> None:
    store = tmp_path / "models"
    (store / "tiny-colors").mkdir(parents=True)
    for name in ("model.pt", "card.json"):
        data = (settings.model_dir / "tiny-colors" / name).read_bytes()
        (store / "tiny-colors" / name).write_bytes(data + (b"\0" if name == "model.pt" else b""))
    with (
        pytest.raises(ModelLoadError, match="sha256"),
        TestClient(create_app(settings.model_copy(update={"model_dir": store}))),
    ):
        pass


def test_a_missing_gpu_is_an_error_not_a_fallback(settings: Settings) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with (
        pytest.raises(RuntimeError, match="CUDA is not available"),
        TestClient(create_app(settings.model_copy(update={"device": "cuda"}))),
    ):
        pass


def test_batch_size_is_tuned_at_warm_up(settings: Settings) -> None:
    with TestClient(
        create_app(settings.model_copy(update={"autotune_batch_size": True}))
    ) as client:
        models = client.get("/models").json()["models"]
    assert all(1 <= model["max_batch_size"] <= settings.max_batch_size for model in models)
    for model in models:  # what was chosen, and the measurements behind it
        tuning = model["tuning"]
        assert tuning["batch_size"] == model["max_batch_size"]
        assert tuning["source"] in ("measured", "profile")
        assert tuning["profile"].endswith(f"{model['model']}.json")
        trial = tuning["batch_trial"]
        assert str(tuning["batch_size"]) == trial["chosen"]
        assert set(trial["relative_cost"]) == set(trial["ms_per_image"])
