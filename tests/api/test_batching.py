"""Concurrent requests are answered by one batched forward pass, each with its own result."""

import asyncio
import re

import httpx2
import pytest

from app.config import Settings
from app.main import create_app
from tests.images import BLUE, GREEN, RED, solid

pytestmark = pytest.mark.anyio


def batch_histogram(metrics_text: str) -> tuple[float, float]:
    """(forward passes, images) of the tiny model, from /metrics."""
    count = re.search(r'visionserve_batch_size_count\{model="tiny-colors"\} (\S+)', metrics_text)
    total = re.search(r'visionserve_batch_size_sum\{model="tiny-colors"\} (\S+)', metrics_text)
    assert count is not None and total is not None
    return float(count.group(1)), float(total.group(1))


async def test_concurrent_requests_share_one_forward_pass(settings: Settings) -> None:
    colors = [RED, GREEN, BLUE, RED, BLUE, GREEN, GREEN, RED]
    expected = ["red", "green", "blue", "red", "blue", "green", "green", "red"]
    # The batch closes when it is full (8), long before the generous wait runs out.
    one_worker = {"max_batch_size": 8, "max_batch_wait_ms": 5000, "inference_threads": 1}
    app = create_app(settings.model_copy(update=one_worker))
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://visionserve") as client:
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/classify", files={"image": (f"{i}.png", solid(color), "image/png")}
                    )
                    for i, color in enumerate(colors)
                )
            )
            metrics = (await client.get("/metrics")).text
    assert [a.status_code for a in answers] == [200] * 8
    labels = [a.json()["results"][0]["predictions"][0]["label"] for a in answers]
    assert labels == expected
    assert [a.json()["results"][0]["filename"] for a in answers] == [f"{i}.png" for i in range(8)]
    assert batch_histogram(metrics) == (1.0, 8.0)


async def test_a_lone_request_is_not_held_for_the_full_wait(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"max_batch_size": 8, "max_batch_wait_ms": 2}))
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://visionserve") as client:
            answer = await client.post(
                "/classify", files={"image": ("a.png", solid(RED), "image/png")}
            )
            metrics = (await client.get("/metrics")).text
    assert answer.status_code == 200
    assert batch_histogram(metrics) == (1.0, 1.0)
