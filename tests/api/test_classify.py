"""POST /classify through the real app: shapes, batches, raw bodies, parameters."""

import pytest
from fastapi.testclient import TestClient

from tests.images import BLUE, GREEN, RED, encode, oriented_jpeg, photo, quadrants, solid


def test_one_image_in_multipart(client: TestClient) -> None:
    answer = client.post("/classify", files={"image": ("red.png", solid(RED), "image/png")})
    assert answer.status_code == 200
    body = answer.json()
    assert body["model"]["name"] == "tiny-colors"
    assert body["model"]["version"] == "0.0.1"
    assert len(body["model"]["sha256"]) == 64
    [result] = body["results"]
    assert result["index"] == 0
    assert result["filename"] == "red.png"
    assert (result["width"], result["height"]) == (48, 40)
    assert [p["label"] for p in result["predictions"]] == ["red", "green", "blue"]
    assert result["predictions"][0]["class_id"] == 0
    assert result["predictions"][0]["score"] > 0.9
    assert "error" not in result


def test_a_batch_answers_each_image_in_order(client: TestClient) -> None:
    files = [
        ("image", (f"{i}.png", solid(color), "image/png"))
        for i, color in enumerate((BLUE, RED, GREEN))
    ]
    answer = client.post("/classify", files=files, params={"top_k": 1})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["filename"] for r in results] == ["0.png", "1.png", "2.png"]
    assert [[p["label"] for p in r["predictions"]] for r in results] == [
        ["blue"],
        ["red"],
        ["green"],
    ]


def test_raw_image_body(client: TestClient) -> None:
    answer = client.post("/classify", content=solid(GREEN), headers={"content-type": "image/png"})
    assert answer.status_code == 200
    [result] = answer.json()["results"]
    assert result["predictions"][0]["label"] == "green"
    assert "filename" not in result


def test_top_k_is_capped_by_the_number_of_labels(client: TestClient) -> None:
    answer = client.post(
        "/classify", content=solid(RED), headers={"content-type": "image/png"}, params={"top_k": 50}
    )
    assert len(answer.json()["results"][0]["predictions"]) == 3


def test_named_model(client: TestClient) -> None:
    answer = client.post(
        "/classify",
        params={"model": "tiny-colors"},
        content=solid(RED),
        headers={"content-type": "image/png"},
    )
    assert answer.status_code == 200


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_is_applied_before_inference(client: TestClient, orientation: int) -> None:
    upload = oriented_jpeg(quadrants(64, 48), orientation)
    answer = client.post("/classify", files={"image": ("rotated.jpg", upload, "image/jpeg")})
    [result] = answer.json()["results"]
    assert (result["width"], result["height"]) == (64, 48)
    assert result["predictions"][0]["label"] == "red"  # the upright top-left quadrant


def test_real_photos_in_every_format(client: TestClient) -> None:
    cat = photo("chelsea")
    uploads = [
        encode(cat, "JPEG"),
        encode(cat, "PNG"),
        encode(cat, "WEBP"),
        encode(cat.convert("CMYK"), "TIFF"),
    ]
    files = [
        ("image", (f"cat{i}", data, "application/octet-stream")) for i, data in enumerate(uploads)
    ]
    results = client.post("/classify", files=files).json()["results"]
    assert all((r["width"], r["height"]) == (451, 300) for r in results)
    labels = {r["predictions"][0]["label"] for r in results}
    assert len(labels) == 1  # the same picture gives the same answer in every container
