"""The overload floor's server refuses every request before reading any of its body."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from bench.refuse_all import app

pytestmark = pytest.mark.anyio


async def test_every_request_is_a_503_before_its_body_is_read() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the floor must not read the body")

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app({"type": "http", "method": "POST", "path": "/classify"}, receive, send)
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 503
    assert (b"retry-after", b"1") in sent[0]["headers"]


def test_its_answer_is_well_formed_json_over_http() -> None:
    answer = TestClient(app).post("/classify", content=b"x" * 100_000)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "overloaded"
