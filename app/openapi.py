"""The OpenAPI document as committed in docs/openapi.json (`make openapi`, checked by a test)."""

import json

from app.config import Settings
from app.main import create_app


def openapi_document(settings: Settings) -> str:
    """The service's OpenAPI document as stable JSON text; building the app loads no model."""
    return json.dumps(create_app(settings).openapi(), indent=2, ensure_ascii=False) + "\n"
