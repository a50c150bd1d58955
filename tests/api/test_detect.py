"""POST /detect: boxes in the upload's own upright pixels, thresholds, batches, wrong task."""

import asyncio
import hashlib
import re

import httpx2
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.main import create_app
from tests.images import RED, encode, oriented_jpeg, photo

RED_BOX = (100, 50, 300, 200)  # x_min, y_min, x_max, y_max in a 640 x 480 upload


def scene(
    size: tuple[int, int] = (640, 480), box: tuple[int, int, int, int] = RED_BOX
) -> Image.Image:
    image = Image.new("RGB", size, (255, 255, 255))
    image.paste(RED, box)
    return image


def box_of(detection: dict[str, object]) -> tuple[float, ...]:
    box = detection["box"]
    assert isinstance(box, dict)
    return (box["x_min"], box["y_min"], box["x_max"], box["y_max"])


def assert_near(actual: tuple[float, ...], expected: tuple[int, ...], tolerance: float) -> None:
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)), actual


def test_boxes_are_in_the_pixels_of_the_original_upload(client: TestClient) -> None:
    answer = client.post(
        "/detect", files={"image": ("scene.png", encode(scene(), "PNG"), "image/png")}
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["model"]["name"] == "tiny-boxes"
    assert body["score_threshold"] == 0.5
    [result] = body["results"]
    assert (result["width"], result["height"]) == (640, 480)
    [detection] = result["detections"]
    assert (detection["label"], detection["class_id"], detection["score"]) == (
        "red thing",
        1,
        pytest.approx(0.9),
    )
    # The model saw the image at 160 x 120 (4 px per input pixel): boxes map back to 640 x 480.
    assert_near(box_of(detection), RED_BOX, tolerance=4)


def test_a_small_upload_is_not_upscaled(client: TestClient) -> None:
    small = scene((120, 90), (10, 20, 50, 60))
    [result] = client.post(
        "/detect", content=encode(small, "PNG"), headers={"content-type": "image/png"}
    ).json()["results"]
    assert_near(box_of(result["detections"][0]), (10, 20, 50, 60), tolerance=0.01)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_boxes_follow_exif_orientation(client: TestClient, orientation: int) -> None:
    upload = oriented_jpeg(scene(), orientation)
    [result] = client.post(
        "/detect", files={"image": ("rotated.jpg", upload, "image/jpeg")}
    ).json()["results"]
    assert (result["width"], result["height"]) == (640, 480)
    assert_near(box_of(result["detections"][0]), RED_BOX, tolerance=6)


def test_threshold_and_max_detections(client: TestClient) -> None:
    content, headers = encode(scene(), "PNG"), {"content-type": "image/png"}
    low = client.post(
        "/detect", params={"score_threshold": 0.05}, content=content, headers=headers
    ).json()
    assert [d["label"] for d in low["results"][0]["detections"]] == ["red thing", "anything"]
    assert box_of(low["results"][0]["detections"][1]) == (0, 0, 640, 480)
    best = client.post(
        "/detect",
        params={"score_threshold": 0.05, "max_detections": 1},
        content=content,
        headers=headers,
    ).json()
    assert [d["label"] for d in best["results"][0]["detections"]] == ["red thing"]
    none = client.post(
        "/detect", params={"score_threshold": 0.95}, content=content, headers=headers
    ).json()
    assert none["results"][0]["detections"] == []


def test_batch_of_different_sizes_with_a_bad_file(client: TestClient) -> None:
    files = [
        ("image", ("a.png", encode(scene(), "PNG"), "image/png")),
        ("image", ("b.jpg", b"<html>not an image</html>", "image/jpeg")),
        ("image", ("c.png", encode(scene((300, 500), (20, 30, 120, 90)), "PNG"), "image/png")),
        ("image", ("cat.jpg", encode(photo("chelsea"), "JPEG"), "image/jpeg")),
    ]
    results = client.post("/detect", files=files).json()["results"]
    assert_near(box_of(results[0]["detections"][0]), RED_BOX, tolerance=4)
    assert results[1]["error"]["details"]["detected"] == "an HTML document"
    assert_near(box_of(results[2]["detections"][0]), (20, 30, 120, 90), tolerance=4)
    assert (results[3]["width"], results[3]["height"]) == (451, 300)
    # Every result, the failed one included, names the exact bytes it answers for.
    digests = [hashlib.sha256(content).hexdigest() for _, (_, content, _) in files]
    assert [result["image_sha256"] for result in results] == digests


def test_wrong_task_both_ways(client: TestClient) -> None:
    png = {"content": encode(scene(), "PNG"), "headers": {"content-type": "image/png"}}
    answer = client.post("/detect", params={"model": "tiny-colors"}, **png)  # type: ignore[arg-type]
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "wrong_task"
    answer = client.post("/classify", params={"model": "tiny-boxes"}, **png)  # type: ignore[arg-type]
    assert answer.status_code == 409
    assert answer.json()["error"]["details"] == {"model": "tiny-boxes", "task": "detect"}


@pytest.mark.parametrize(
    ("params", "field"),
    [({"score_threshold": "2"}, "score_threshold"), ({"max_detections": "0"}, "max_detections")],
)
def test_bad_detect_parameters(client: TestClient, params: dict[str, str], field: str) -> None:
    answer = client.post(
        "/detect",
        params=params,
        content=encode(scene(), "PNG"),
        headers={"content-type": "image/png"},
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["details"]["errors"][0]["location"] == ["query", field]


@pytest.mark.anyio
async def test_callers_with_different_image_sizes_share_one_forward_pass(
    settings: Settings,
) -> None:
    one_worker = {"max_batch_size": 4, "max_batch_wait_ms": 5000, "inference_threads": 1}
    app = create_app(settings.model_copy(update=one_worker))
    sizes = [(640, 480), (200, 300), (160, 160), (90, 120)]
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://visionserve") as client:
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/detect",
                        files={
                            "image": (
                                f"{w}x{h}.png",
                                encode(scene((w, h), (5, 5, 40, 40)), "PNG"),
                                "image/png",
                            )
                        },
                    )
                    for w, h in sizes
                )
            )
            metrics = (await client.get("/metrics")).text
    for answer, (width, height) in zip(answers, sizes, strict=True):
        [result] = answer.json()["results"]
        assert (result["width"], result["height"]) == (width, height)
        assert_near(box_of(result["detections"][0]), (5, 5, 40, 40), tolerance=4)
    count = re.search(r'visionserve_batch_size_count\{model="tiny-boxes"\} (\S+)', metrics)
    assert count is not None and float(count.group(1)) == 1.0
