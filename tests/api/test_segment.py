"""POST /segment: masks at the upright upload's size, aligned, PNG or RLE, batched, per-image."""

import asyncio
import base64
import hashlib
import io
import re
from typing import Any

import httpx2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.main import create_app
from app.services.masks import ClassRle, decode_rle
from tests.images import BLUE, RED, encode, oriented_jpeg, photo
from tests.segmenters import SIDE, TINY_SEGMENTER

RED_BOX = (20, 10, 70, 50)  # x_min, y_min, x_max, y_max in a 128 x 96 upload
BLUE_BOX = (80, 60, 120, 90)


def scene(size: tuple[int, int] = (SIDE, 96)) -> Image.Image:
    image = Image.new("RGB", size, (255, 255, 255))
    image.paste(RED, RED_BOX)
    image.paste(BLUE, BLUE_BOX)
    return image


def expected_mask(size: tuple[int, int] = (SIDE, 96)) -> np.ndarray:
    mask = np.zeros((size[1], size[0]), dtype=np.uint8)
    for class_id, (x0, y0, x1, y1) in ((1, RED_BOX), (2, BLUE_BOX)):
        mask[y0:y1, x0:x1] = class_id
    return mask


def png_mask(result: dict[str, object]) -> np.ndarray:
    mask = result["mask"]
    assert isinstance(mask, dict) and mask["format"] == "png"
    image = Image.open(io.BytesIO(base64.b64decode(mask["data"])))
    assert image.mode == "P"  # single channel, values are class ids
    return np.asarray(image)


def assert_aligned(mask: np.ndarray, expected: np.ndarray) -> None:
    """Every wrong pixel lies within 1 pixel of a true boundary (alignment to 1 px)."""
    assert mask.shape == expected.shape
    wrong = np.argwhere(mask != expected)
    padded = np.pad(expected, 1, mode="edge")
    for y, x in wrong:
        window = padded[y : y + 3, x : x + 3]  # the 3 x 3 neighbourhood around (y, x)
        assert mask[y, x] in window, (y, x, mask[y, x])
        assert len(np.unique(window)) > 1, f"pixel {(x, y)} is wrong away from any edge"


def post_png(client: TestClient, image: Image.Image, **params: str) -> dict[str, Any]:
    answer = client.post(
        "/segment",
        params=params,
        content=encode(image, "PNG"),
        headers={"content-type": "image/png"},
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_png_mask_is_the_upload_size_with_class_ids_and_counts(client: TestClient) -> None:
    body = post_png(client, scene())
    assert body["model"]["name"] == TINY_SEGMENTER
    assert body["format"] == "png"
    [result] = body["results"]
    assert (result["width"], result["height"]) == (SIDE, 96)
    mask = png_mask(result)
    assert_aligned(mask, expected_mask())
    classes = {item["label"]: item for item in result["classes"]}
    assert list(classes) == ["background", "red thing", "blue thing"]  # most pixels first
    assert sum(item["pixels"] for item in classes.values()) == SIDE * 96
    for item in classes.values():
        assert item["pixels"] == int((mask == item["class_id"]).sum())
        assert item["fraction"] == pytest.approx(item["pixels"] / (SIDE * 96))


def test_rle_masks_decode_with_pycocotools_to_the_png_mask(client: TestClient) -> None:
    png = png_mask(post_png(client, scene())["results"][0])
    body = post_png(client, scene(), format="rle")
    assert body["format"] == "rle"
    [result] = body["results"]
    mask = result["mask"]
    assert mask["format"] == "rle"
    assert [item["class_id"] for item in mask["classes"]] == [0, 1, 2]
    rebuilt = np.zeros_like(png)
    for item in mask["classes"]:
        assert item["size"] == [96, SIDE]  # COCO order: height, width
        binary = decode_rle(ClassRle(class_id=0, size=tuple(item["size"]), counts=item["counts"]))
        rebuilt[binary.astype(bool)] = item["class_id"]
    assert np.array_equal(rebuilt, png)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_masks_follow_exif_orientation(client: TestClient, orientation: int) -> None:
    upload = oriented_jpeg(scene(), orientation)
    stored = Image.open(io.BytesIO(upload)).size
    answer = client.post("/segment", files={"image": ("phone.jpg", upload, "image/jpeg")})
    [result] = answer.json()["results"]
    assert (result["width"], result["height"]) == (SIDE, 96)
    if orientation in (6, 8):
        assert stored == (96, SIDE)  # the file holds the rotated pixels
    assert_aligned(png_mask(result), expected_mask())


def test_large_uploads_get_a_full_size_mask(client: TestClient) -> None:
    big = scene().resize((SIDE * 12, 96 * 12), Image.Resampling.NEAREST)
    [result] = post_png(client, big)["results"]
    mask = png_mask(result)
    assert mask.shape == (96 * 12, SIDE * 12)
    # 12 upload pixels per model pixel: a boundary may be off by that much, no more.
    wrong = mask != np.kron(expected_mask(), np.ones((12, 12), dtype=np.uint8))
    assert wrong.mean() < 0.02


def test_batch_of_different_sizes_with_a_bad_file(client: TestClient) -> None:
    files = [
        ("image", ("a.png", encode(scene(), "PNG"), "image/png")),
        ("image", ("b.jpg", b"<html>not an image</html>", "image/jpeg")),
        ("image", ("cat.jpg", encode(photo("chelsea"), "JPEG"), "image/jpeg")),
    ]
    answer = client.post("/segment", files=files)
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert_aligned(png_mask(results[0]), expected_mask())
    assert results[1]["error"]["code"] == "invalid_image"
    assert "mask" not in results[1]
    assert png_mask(results[2]).shape == (300, 451)
    digests = [hashlib.sha256(content).hexdigest() for _, (_, content, _) in files]
    assert [result["image_sha256"] for result in results] == digests


def test_a_lone_bad_image_is_the_answer_itself(client: TestClient) -> None:
    answer = client.post("/segment", content=b"", headers={"content-type": "image/png"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_image"


def test_wrong_task_both_ways(client: TestClient) -> None:
    png = encode(scene(), "PNG")
    headers = {"content-type": "image/png"}
    for route, model in (("/segment", "tiny-colors"), ("/segment", "tiny-boxes")):
        answer = client.post(route, params={"model": model}, content=png, headers=headers)
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "wrong_task"
    for route in ("/classify", "/detect"):
        answer = client.post(route, params={"model": TINY_SEGMENTER}, content=png, headers=headers)
        assert answer.status_code == 409
        assert answer.json()["error"]["details"] == {"model": TINY_SEGMENTER, "task": "segment"}


def test_bad_format_unknown_model_and_limits(client: TestClient) -> None:
    png = encode(scene(), "PNG")
    headers = {"content-type": "image/png"}
    answer = client.post("/segment", params={"format": "jpeg"}, content=png, headers=headers)
    assert answer.status_code == 422
    answer = client.post("/segment", params={"model": "absent"}, content=png, headers=headers)
    assert answer.status_code == 404
    files = [("image", (f"{i}.png", png, "image/png")) for i in range(5)]  # the limit is 4
    answer = client.post("/segment", files=files)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_many_images"
    huge = encode(Image.new("RGB", (2100, 2000)), "PNG")  # over 4 M pixels
    answer = client.post("/segment", content=huge, headers=headers)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "image_too_large"


def test_models_lists_the_segmenter(client: TestClient) -> None:
    body = client.get("/models").json()
    assert body["default_segmenter"] == TINY_SEGMENTER
    tasks = {model["card"]["name"]: model["card"]["task"] for model in body["models"]}
    assert tasks[TINY_SEGMENTER] == "segment"
    assert client.get("/readyz").status_code == 200


@pytest.mark.anyio
async def test_callers_with_different_image_sizes_share_one_forward_pass(
    settings: Settings,
) -> None:
    one_worker = {"max_batch_size": 4, "max_batch_wait_ms": 5000, "inference_threads": 1}
    app = create_app(settings.model_copy(update=one_worker))
    sizes = [(SIDE, 96), (200, 300), (64, 64), (90, 120)]
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://visionserve") as client:
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/segment",
                        files={
                            "image": (f"{w}x{h}.png", encode(scene((w, h)), "PNG"), "image/png")
                        },
                    )
                    for w, h in sizes
                )
            )
            metrics = (await client.get("/metrics")).text
    for answer, (width, height) in zip(answers, sizes, strict=True):
        [result] = answer.json()["results"]
        assert (result["width"], result["height"]) == (width, height)
        assert png_mask(result).shape == (height, width)
    count = re.search(rf'visionserve_batch_size_count\{{model="{TINY_SEGMENTER}"\}} (\S+)', metrics)
    assert count is not None and float(count.group(1)) == 1.0
