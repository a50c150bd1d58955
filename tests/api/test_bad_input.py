"""Bad input gets a precise 4xx in the error shape, and costs nobody else anything."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.main import create_app
from tests.images import RED, encode, photo, png_header_only, solid

JPEG = encode(photo("coffee"), "JPEG")
PNG = encode(photo("coffee"), "PNG")

BAD_UPLOADS = {
    "empty": (b"", 400, "invalid_image", "empty"),
    "text named .jpg": (b"hello, this is a text file\n", 400, "invalid_image", "not_an_image"),
    "html named .jpg": (
        b"<!doctype html><html><p>404</p></html>",
        400,
        "invalid_image",
        "not_an_image",
    ),
    "pdf named .jpg": (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\n",
        400,
        "invalid_image",
        "not_an_image",
    ),
    "truncated jpeg": (JPEG[: len(JPEG) // 3], 400, "invalid_image", "truncated"),
    "truncated png": (PNG[: len(PNG) // 3], 400, "invalid_image", "truncated"),
    "1x1": (encode(Image.new("RGB", (1, 1)), "PNG"), 400, "invalid_image", "too_small"),
    "0-size": (png_header_only(0, 16), 400, "invalid_image", "zero_size"),
    "bomb": (png_header_only(50_000, 50_000), 413, "image_too_large", None),
    "over pixel limit": (png_header_only(3000, 3000), 413, "image_too_large", None),
}


def assert_error(answer: object, status: int, code: str) -> dict[str, object]:
    assert answer.status_code == status, answer.text  # type: ignore[attr-defined]
    body = answer.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_one_bad_upload_gets_a_precise_error(client: TestClient, case: str) -> None:
    data, status, code, reason = BAD_UPLOADS[case]
    error = assert_error(
        client.post("/classify", files={"image": ("photo.jpg", data, "image/jpeg")}), status, code
    )
    if reason is not None:
        assert error["details"]["reason"] == reason  # type: ignore[index]
    assert (
        client.post(
            "/classify", content=solid(RED), headers={"content-type": "image/png"}
        ).status_code
        == 200
    )


def test_in_a_batch_each_bad_file_gets_its_own_error(client: TestClient) -> None:
    files = [
        ("image", ("good.png", solid(RED), "image/png")),
        ("image", ("notes.jpg", b"not an image", "image/jpeg")),
        ("image", ("cut.jpg", JPEG[:500], "image/jpeg")),
        ("image", ("also-good.jpg", JPEG, "image/jpeg")),
    ]
    answer = client.post("/classify", files=files)
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert results[0]["predictions"][0]["label"] == "red"
    assert results[1]["error"]["code"] == "invalid_image"
    assert results[1]["error"]["details"]["detected"] == "plain text"
    assert results[2]["error"]["details"]["reason"] == "truncated"
    assert "predictions" in results[3] and "error" not in results[3]
    assert [r["index"] for r in results] == [0, 1, 2, 3]


def test_too_many_files(client: TestClient, settings: Settings) -> None:
    files = [
        ("image", (f"{i}.png", solid(RED), "image/png"))
        for i in range(settings.max_images_per_request + 1)
    ]
    error = assert_error(client.post("/classify", files=files), 413, "too_many_images")
    assert error["details"] == {"limit": settings.max_images_per_request}


def test_one_file_over_the_byte_limit(client: TestClient, settings: Settings) -> None:
    huge = b"\xff\xd8\xff" + b"\0" * settings.max_image_bytes
    files = [
        ("image", ("big.jpg", huge, "image/jpeg")),
        ("image", ("ok.png", solid(RED), "image/png")),
    ]
    results = client.post("/classify", files=files).json()["results"]
    assert results[0]["error"]["code"] == "payload_too_large"
    assert results[1]["predictions"][0]["label"] == "red"


def test_body_over_the_request_limit_is_refused_before_reading(
    client: TestClient, settings: Settings
) -> None:
    body = b"\0" * (settings.max_request_bytes + 1)
    assert_error(
        client.post("/classify", content=body, headers={"content-type": "image/jpeg"}),
        413,
        "payload_too_large",
    )


def test_chunked_body_over_the_limit(client: TestClient, settings: Settings) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(settings.max_request_bytes // (1 << 20) + 2):
            yield b"\0" * (1 << 20)

    answer = client.post("/classify", content=chunks(), headers={"content-type": "image/jpeg"})
    assert_error(answer, 413, "payload_too_large")


def test_unknown_model(client: TestClient) -> None:
    answer = client.post(
        "/classify",
        params={"model": "nope"},
        content=solid(RED),
        headers={"content-type": "image/png"},
    )
    error = assert_error(answer, 404, "model_not_found")
    assert error["details"] == {
        "model": "nope",
        "available": ["tiny-boxes", "tiny-colors", "tiny-regions"],
    }


def test_missing_image_field(client: TestClient) -> None:
    answer = client.post("/classify", files={"picture": ("a.png", solid(RED), "image/png")})
    error = assert_error(answer, 422, "validation")
    assert error["details"]["fields_sent"] == ["picture"]  # type: ignore[index]


def test_image_field_must_be_a_file(client: TestClient) -> None:
    answer = client.post("/classify", data={"image": "a string"}, files={"other": ("a", b"x")})
    assert_error(answer, 422, "validation")


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded", None]
)
def test_wrong_content_type(client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    assert_error(
        client.post("/classify", content=b"{}", headers=headers), 415, "unsupported_media_type"
    )


def test_malformed_multipart(client: TestClient) -> None:
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    answer = client.post(
        "/classify", content=b"--xyz\r\nContent-Disposition: garbage\r\n\r\n", headers=headers
    )
    assert answer.status_code in (400, 422)
    assert answer.json()["error"]["code"] in ("invalid_request", "validation")


@pytest.mark.parametrize("top_k", ["0", "101", "five"])
def test_bad_query_parameters(client: TestClient, top_k: str) -> None:
    answer = client.post(
        "/classify",
        params={"top_k": top_k},
        content=solid(RED),
        headers={"content-type": "image/png"},
    )
    error = assert_error(answer, 422, "validation")
    assert error["details"]["errors"][0]["location"] == ["query", "top_k"]  # type: ignore[index]


def test_overload_answers_503_with_retry_after(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"queue_limit": 1}))) as client:
        files = [("image", (f"{i}.png", solid(RED), "image/png")) for i in range(2)]
        answer = client.post("/classify", files=files)
        assert_error(answer, 503, "overloaded")
        assert answer.headers["retry-after"] == "1"


def test_api_keys(settings: Settings) -> None:
    with TestClient(
        create_app(settings.model_copy(update={"api_keys": frozenset({"s3cret"})}))
    ) as client:
        upload = {"content": solid(RED), "headers": {"content-type": "image/png"}}
        assert_error(client.post("/classify", **upload), 401, "unauthorized")  # type: ignore[arg-type]
        wrong = {"content-type": "image/png", "authorization": "Bearer nope"}
        assert_error(
            client.post("/classify", content=solid(RED), headers=wrong), 401, "unauthorized"
        )
        right = {"content-type": "image/png", "authorization": "Bearer s3cret"}
        assert client.post("/classify", content=solid(RED), headers=right).status_code == 200
        header = {"content-type": "image/png", "x-api-key": "s3cret"}
        assert client.post("/classify", content=solid(RED), headers=header).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_unknown_route_uses_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/classify"), 405, "method_not_allowed")
