"""docs/openapi.json is the document the service serves with default settings."""

import json
import os

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.openapi import openapi_document
from tests.conftest import ROOT

COMMITTED = ROOT / "docs" / "openapi.json"


def default_settings() -> Settings:
    """Settings with none of this process's VISION_* variables, as `make openapi` runs."""
    with pytest.MonkeyPatch.context() as patch:
        for name in os.environ:
            if name.startswith("VISION_"):
                patch.delenv(name)
        return Settings()


def test_committed_openapi_is_current() -> None:
    assert openapi_document(default_settings()) == COMMITTED.read_text(), (
        "docs/openapi.json is stale: run `make openapi` and commit it"
    )


def test_the_document_is_what_the_service_serves(settings: Settings) -> None:
    """The same builder as GET /openapi.json, so the committed file documents the real routes."""
    with TestClient(create_app(settings)) as client:
        served = client.get("/openapi.json").json()
    assert served == json.loads(openapi_document(settings))
    assert set(served["paths"]) >= {"/classify", "/detect", "/models", "/healthz", "/readyz"}
