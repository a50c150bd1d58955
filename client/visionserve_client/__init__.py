"""A typed client for visionserve: `Client`, `AsyncClient`, `VisionServeError`, the models."""

from visionserve_client.client import AsyncClient, Client, RetryPolicy
from visionserve_client.errors import VisionServeError
from visionserve_client.models import ClassifyResponse, DetectResponse, ModelsResponse

__all__ = [
    "AsyncClient",
    "ClassifyResponse",
    "Client",
    "DetectResponse",
    "ModelsResponse",
    "RetryPolicy",
    "VisionServeError",
]
