"""/v2, the Open Inference Protocol: Triton's own client against a running service."""

import base64
import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient
from PIL import Image
from tritonclient.utils import InferenceServerException

from app.config import Settings
from app.main import create_app
from tests.conftest import ROOT, TINY_DETECTOR, TINY_MODEL
from tests.images import GREEN, RED, encode, photo, solid
from tests.segmenters import TINY_SEGMENTER
from tests.server.conftest import LiveServer, run_live_server

RED_SQUARE_BOX = (10, 20, 40, 45)


def red_square() -> bytes:
    """A white PNG with one red rectangle at RED_SQUARE_BOX."""
    image = Image.new("RGB", (80, 60), (255, 255, 255))
    image.paste(RED, RED_SQUARE_BOX)
    return encode(image, "PNG")


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    """The service on loopback, as `python -m app` serves it."""
    yield from run_live_server(settings)


def image_input(*images: bytes) -> triton.InferInput:
    """The IMAGE input: encoded images as BYTES, sent with the binary tensor extension."""
    tensor = triton.InferInput("IMAGE", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
    return tensor


def connect(live: LiveServer) -> triton.InferenceServerClient:
    """Triton's HTTP client for the live service."""
    return triton.InferenceServerClient(url=f"{live.host}:{live.port}")


def test_health_and_metadata(live: LiveServer) -> None:
    triton_client = connect(live)
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert "binary_tensor_data" in triton_client.get_server_metadata()["extensions"]
    assert triton_client.is_model_ready(TINY_MODEL)
    metadata = triton_client.get_model_metadata(TINY_MODEL)
    assert metadata["inputs"] == [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1]}]
    outputs = {output["name"]: output["datatype"] for output in metadata["outputs"]}
    assert outputs["LABEL"] == "BYTES"
    assert outputs["SCORE"] == "FP32"
    assert "BOX" in {o["name"] for o in triton_client.get_model_metadata(TINY_DETECTOR)["outputs"]}


def test_tritonclient_classifies_as_classify_does(live: LiveServer, client: TestClient) -> None:
    images = (solid(RED), solid(GREEN))
    result = connect(live).infer(TINY_MODEL, [image_input(*images)], parameters={"top_k": 2})
    labels = result.as_numpy("LABEL")
    assert labels.shape == (2, 2)
    assert [row[0] for row in labels] == [b"red", b"green"]
    files = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    expected = client.post("/classify?top_k=2", files=files).json()["results"]
    scores = [[p["score"] for p in item["predictions"]] for item in expected]
    np.testing.assert_allclose(result.as_numpy("SCORE"), scores, rtol=1e-6)
    assert result.as_numpy("CLASS_ID").dtype == np.int64
    assert list(result.as_numpy("WIDTH")) == [48, 48]
    assert [s.decode() for s in result.as_numpy("IMAGE_SHA256")] == [
        item["image_sha256"] for item in expected
    ]
    assert list(result.as_numpy("ERROR")) == [b"", b""]


def test_tritonclient_detects_as_detect_does(live: LiveServer, client: TestClient) -> None:
    result = connect(live).infer(TINY_DETECTOR, [image_input(red_square(), solid(GREEN))])
    counts = list(result.as_numpy("COUNT"))
    expected = client.post(
        "/detect",
        files=[
            ("image", ("a.png", red_square(), "image/png")),
            ("image", ("b.png", solid(GREEN), "image/png")),
        ],
    ).json()["results"]
    assert counts == [len(item["detections"]) for item in expected]
    assert counts[0] >= 1
    boxes = result.as_numpy("BOX")
    assert boxes.shape == (2, max(counts), 4)
    first = expected[0]["detections"][0]
    np.testing.assert_allclose(
        boxes[0][0], [first["box"][k] for k in ("x_min", "y_min", "x_max", "y_max")], rtol=1e-5
    )
    np.testing.assert_allclose(boxes[0][0], RED_SQUARE_BOX, atol=1.0)
    assert result.as_numpy("LABEL")[0][0] == b"red thing"


def test_tritonclient_segments_as_segment_does(live: LiveServer, client: TestClient) -> None:
    images = (red_square(), b"not an image", solid(GREEN))
    result = connect(live).infer(TINY_SEGMENTER, [image_input(*images)])
    files = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    expected = client.post("/segment", files=files).json()["results"]

    masks = result.as_numpy("MASK")
    for index in (0, 2):
        served = np.asarray(Image.open(io.BytesIO(masks[index])))
        png = base64.b64decode(expected[index]["mask"]["data"])
        assert np.array_equal(served, np.asarray(Image.open(io.BytesIO(png))))
        assert served.shape == (expected[index]["height"], expected[index]["width"])
        classes = expected[index]["classes"]
        count = int(result.as_numpy("COUNT")[index])
        assert count == len(classes)
        assert list(result.as_numpy("CLASS_ID")[index][:count]) == [c["class_id"] for c in classes]
        assert list(result.as_numpy("PIXELS")[index][:count]) == [c["pixels"] for c in classes]
        labels = [label.decode() for label in result.as_numpy("LABEL")[index][:count]]
        assert labels == [c["label"] for c in classes]
    assert masks[1] == b""
    assert result.as_numpy("ERROR")[1].startswith(b"invalid_image: ")
    outputs = {o["name"] for o in connect(live).get_model_metadata(TINY_SEGMENTER)["outputs"]}
    assert {"MASK", "PIXELS", "LABEL", "CLASS_ID", "ERROR"} <= outputs


def test_a_bad_image_gets_its_own_error(live: LiveServer) -> None:
    result = connect(live).infer(TINY_MODEL, [image_input(solid(RED), b"not an image")])
    errors = list(result.as_numpy("ERROR"))
    assert errors[0] == b""
    assert errors[1].startswith(b"invalid_image: ")
    assert result.as_numpy("LABEL")[0][0] == b"red"


@pytest.mark.parametrize(
    ("model", "parameters", "status", "code"),
    [
        ("nope", {}, "404", "model_not_found"),
        (TINY_MODEL, {"top_kk": 3}, "422", "validation"),
        (TINY_MODEL, {"top_k": 0}, "422", "validation"),
        (TINY_DETECTOR, {"top_k": 3}, "422", "validation"),
    ],
)
def test_errors_come_in_the_protocol_shape(
    live: LiveServer, model: str, parameters: dict[str, int], status: str, code: str
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        connect(live).infer(model, [image_input(solid(RED))], parameters=parameters)
    assert raised.value.status() == status
    assert raised.value.message().startswith(f"{code}: ")


def test_api_keys_apply(settings: Settings) -> None:
    for server in run_live_server(settings.model_copy(update={"api_keys": frozenset({"k1"})})):
        triton_client = connect(server)
        assert triton_client.is_server_live()  # health stays open, as /healthz
        with pytest.raises(InferenceServerException) as raised:
            triton_client.infer(TINY_MODEL, [image_input(solid(RED))])
        assert raised.value.status() == "401"
        result = triton_client.infer(
            TINY_MODEL, [image_input(solid(RED))], headers={"X-API-Key": "k1"}
        )
        assert result.as_numpy("LABEL")[0][0] == b"red"


def test_json_requests_carry_base64_images(client: TestClient) -> None:
    body = {
        "id": "r1",
        "parameters": {"top_k": 1},
        "inputs": [
            {
                "name": "IMAGE",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(solid(GREEN)).decode()],
            }
        ],
        "outputs": [{"name": "LABEL"}, {"name": "SCORE"}],
    }
    answer = client.post(f"/v2/models/{TINY_MODEL}/infer", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    payload = answer.json()
    assert payload["id"] == "r1"
    assert payload["model_name"] == TINY_MODEL
    outputs = {output["name"]: output for output in payload["outputs"]}
    assert set(outputs) == {"LABEL", "SCORE"}
    assert outputs["LABEL"] == {
        "name": "LABEL",
        "datatype": "BYTES",
        "shape": [1, 1],
        "data": ["green"],
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"inputs": [{"name": "IMAGE", "shape": [1], "datatype": "BYTES", "data": ["%%"]}]},
            "base64",
        ),
        (
            {"inputs": [{"name": "PIXELS", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
            "one BYTES input named 'IMAGE'",
        ),
        (
            {"inputs": [{"name": "IMAGE", "shape": [2], "datatype": "BYTES", "data": ["AA=="]}]},
            "shape [2] but 1 elements",
        ),
        ({"input": []}, "malformed"),
    ],
)
def test_malformed_requests_are_400(client: TestClient, body: object, message: str) -> None:
    answer = client.post(f"/v2/models/{TINY_MODEL}/infer", json=body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert isinstance(error, str)
    assert error.startswith("invalid_request: ")
    assert message in error


def test_requested_outputs_in_json_or_binary(live: LiveServer) -> None:
    outputs = [
        triton.InferRequestedOutput("LABEL", binary_data=False),
        triton.InferRequestedOutput("SCORE", binary_data=True),
    ]
    result = connect(live).infer(TINY_MODEL, [image_input(solid(RED))], outputs=outputs)
    names = {output["name"] for output in result.get_response()["outputs"]}
    assert names == {"LABEL", "SCORE"}
    assert result.as_numpy("LABEL")[0][0] in ("red", b"red")
    assert result.as_numpy("SCORE").dtype == np.float32


def test_a_full_queue_is_503_with_retry_after(settings: Settings) -> None:
    """The same queue bound as /classify: more images than it holds are refused at once."""
    images = [base64.b64encode(solid(RED)).decode()] * 2
    body = {"inputs": [{"name": "IMAGE", "shape": [2], "datatype": "BYTES", "data": images}]}
    with TestClient(create_app(settings.model_copy(update={"queue_limit": 1}))) as small:
        answer = small.post(f"/v2/models/{TINY_MODEL}/infer", json=body)
    assert answer.status_code == 503
    assert "retry-after" in answer.headers
    assert answer.json()["error"].startswith("overloaded: ")


def test_tritonclient_classifies_a_photo_with_the_shipped_model() -> None:
    """The issue's check: a real photo, the default ImageNet model, Triton's client."""
    settings = Settings(model_dir=ROOT / "models", max_batch_wait_ms=1, autotune_batch_size=False)
    coffee = encode(photo("coffee"), "JPEG", quality=90)
    for server in run_live_server(settings):
        result = connect(server).infer(
            "imagenet-mobilenet-v2", [image_input(coffee)], parameters={"top_k": 3}
        )
        assert result.as_numpy("LABEL")[0][0] == b"espresso"
        assert result.as_numpy("SCORE")[0][0] > 0.8
        assert (result.as_numpy("WIDTH")[0], result.as_numpy("HEIGHT")[0]) == (600, 400)
        # A calibrated model (fashion-products) decides over /v2 exactly as on /classify.
        photos = (coffee, encode(photo("astronaut"), "JPEG", quality=90))
        decided = connect(server).infer("fashion-products", [image_input(*photos)])
        files = [("image", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
        url = f"http://{server.host}:{server.port}/classify?model=fashion-products"
        expected = httpx.post(url, files=files, timeout=60).json()["results"]
        decisions = [decision.decode() for decision in decided.as_numpy("DECISION")]
        assert decisions == [item["decision"] for item in expected]
        assert decisions[0] == "unknown"  # a coffee cup is none of its products
        np.testing.assert_allclose(
            decided.as_numpy("UNKNOWN_SCORE"), [item["unknown_score"] for item in expected]
        )


def test_body_guard_refusals_take_the_protocol_shape_too(
    client: TestClient, settings: Settings
) -> None:
    """Refused on Content-Length by the middleware, before any route runs."""
    body = b"x" * (settings.max_request_bytes + 1)
    answer = client.post(
        f"/v2/models/{TINY_MODEL}/infer",
        content=body,
        headers={"content-type": "application/octet-stream"},
    )
    assert answer.status_code == 413
    assert answer.json()["error"].startswith("payload_too_large: ")
