"""What the lifespan builds and every request uses."""

from dataclasses import dataclass

from app.config import Settings
from app.observability import ServiceMetrics
from app.runtime.registry import ModelRegistry
from app.services.uploads import ImagePreparer


@dataclass(frozen=True, slots=True)
class AppState:
    """Settings, loaded models, the decode pool and metrics of one running app."""

    settings: Settings
    registry: ModelRegistry
    preparer: ImagePreparer
    metrics: ServiceMetrics
