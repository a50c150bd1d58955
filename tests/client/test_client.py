"""The Python client against a real service on loopback: chunking, errors, retries, keys, CLI."""

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from visionserve_client import AsyncClient, Client, RetryPolicy, VisionServeError
from visionserve_client.cli import main as cli

from app.api.state import AppState
from app.config import Settings
from app.main import create_app
from app.server.worker import uvicorn_config
from scripts.client_models import MODELS, generate
from tests.images import BLUE, GREEN, RED, solid

COLOURS = {"red": RED, "green": GREEN, "blue": BLUE}


@dataclass(frozen=True, kw_only=True)
class Served:
    url: str
    app: FastAPI

    @property
    def state(self) -> AppState:
        return self.app.state.services  # type: ignore[no-any-return]


def serve(settings: Settings) -> Iterator[Served]:
    app = create_app(settings)
    server = uvicorn.Server(uvicorn_config(settings.model_copy(update={"port": 0}), app))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(url=f"http://127.0.0.1:{port}", app=app)
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def served(settings: Settings) -> Iterator[Served]:
    """The service with at most 4 images per request (the settings fixture's limit)."""
    yield from serve(settings)


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """Nine PNGs named by their colour, in upload order; the last one is not an image."""
    paths = []
    for index in range(8):
        name = list(COLOURS)[index % 3]
        path = tmp_path / "photos" / f"{index}-{name}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(solid(COLOURS[name]))
        paths.append(path)
    broken = tmp_path / "photos" / "8-broken.png"
    broken.write_bytes(b"not a png")
    return [*paths, broken]


def test_many_images_become_requests_within_the_service_limit(
    served: Served, photos: list[Path]
) -> None:
    with Client(served.url) as client:  # assumes 32 per request; the service allows 4
        answer = client.classify(photos, top_k=1)
    assert [result.index for result in answer.results] == list(range(9))
    assert [result.filename for result in answer.results] == [path.name for path in photos]
    for path, result in zip(photos[:8], answer.results, strict=False):
        assert result.predictions is not None
        assert result.predictions[0].label == path.stem.split("-")[1]
    last = answer.results[8]  # alone in the last request: the service answered it 400
    assert last.error is not None and last.error.code == "invalid_image"
    assert answer.model.name == "tiny-colors"


def test_the_async_client_detects(served: Served, photos: list[Path]) -> None:
    async def detect() -> list[int]:
        async with AsyncClient(served.url, max_images_per_request=4) as client:
            answer = await client.detect(photos[:5])
            return [len(result.detections or []) for result in answer.results]

    assert asyncio.run(detect()) == [1, 0, 0, 1, 0]  # the tiny detector boxes red only


def test_both_clients_segment_in_chunks(served: Served, photos: list[Path]) -> None:
    with Client(served.url, max_images_per_request=4) as client:
        answer = client.segment(photos[:5])
    assert [result.index for result in answer.results] == list(range(5))
    for result in answer.results:
        assert result.mask is not None and result.classes is not None
        assert result.width is not None and result.height is not None
        assert sum(item.pixels for item in result.classes) == result.width * result.height

    async def segment() -> str:
        async with AsyncClient(served.url) as client:
            return (await client.segment(photos[:1], mask_format="rle")).format

    assert asyncio.run(segment()) == "rle"


def test_a_full_queue_is_retried_after_the_wait_the_service_asks(
    served: Served, photos: list[Path]
) -> None:
    batcher = served.state.registry.get("tiny-colors").batcher
    reservation = batcher.reserve(batcher.policy.queue_limit)
    reservation.__enter__()
    threading.Timer(0.5, lambda: reservation.__exit__(None, None, None)).start()
    started = time.monotonic()
    with Client(served.url, retry=RetryPolicy(attempts=3)) as client:
        answer = client.classify(photos[:1])
    assert answer.results[0].predictions is not None
    assert time.monotonic() - started >= 1.0  # Retry-After: 1


def test_without_retries_the_overload_is_reported_as_the_service_words_it(
    served: Served, photos: list[Path]
) -> None:
    batcher = served.state.registry.get("tiny-colors").batcher
    with (
        batcher.reserve(batcher.policy.queue_limit),
        Client(served.url, retry=RetryPolicy(attempts=1)) as client,
        pytest.raises(VisionServeError) as raised,
    ):
        client.classify(photos[:2])
    assert (raised.value.status, raised.value.code) == (503, "overloaded")
    assert raised.value.request_id


def test_api_keys(settings: Settings, photos: list[Path]) -> None:
    for served in serve(settings.model_copy(update={"api_keys": frozenset({"k1"})})):
        with Client(served.url) as anonymous, pytest.raises(VisionServeError) as raised:
            anonymous.models()
        assert raised.value.code == "unauthorized"
        with Client(served.url, api_key="k1") as client:
            assert {"tiny-colors", "tiny-boxes"} <= {m.card.name for m in client.models().models}
            assert client.ready()


def test_connection_failures_are_retried_then_raised() -> None:
    policy = RetryPolicy(attempts=2, backoff_s=0.01)
    with Client("http://127.0.0.1:9", retry=policy) as client, pytest.raises(httpx.ConnectError):
        client.classify([solid(RED)])


def test_waits_follow_retry_after_within_the_cap() -> None:
    policy = RetryPolicy(attempts=3, max_wait_s=5.0, backoff_s=0.5)
    busy = httpx.Response(503, headers={"retry-after": "30"})
    assert policy.wait_s(0, busy) == 5.0
    assert policy.wait_s(1, httpx.Response(503)) == 1.0
    assert policy.wait_s(2, busy) is None  # the last try
    assert policy.wait_s(0, httpx.Response(400)) is None  # only 503 is worth another try


def test_the_cli_classifies_a_folder(
    served: Served, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli(["classify", str(photos[0].parent), "--url", served.url, "--top-k", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1  # one image could not be read
    assert lines[0].startswith(f"{photos[0]}: red ")
    assert lines[-1] == f"{photos[8]}: error invalid_image: " + lines[-1].split(": ", 2)[2]
    assert cli(["classify", str(photos[0]), "--url", served.url, "--json"]) == 0
    assert '"label": "red"' in capsys.readouterr().out


def test_the_client_models_follow_the_service_schema() -> None:
    assert MODELS.read_text() == generate(), "run python -m scripts.client_models"
