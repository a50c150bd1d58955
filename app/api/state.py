"""What the lifespan builds and every request uses."""

from dataclasses import dataclass, field

from app.config import Settings
from app.observability import ServiceMetrics
from app.runtime.registry import ModelRegistry
from app.runtime.reload import ModelReloader
from app.services.galleries import GalleryServices
from app.services.uploads import ImagePreparer

# The key under which the lifespan hands its Lifecycle to the server (ASGI lifespan state).
LIFECYCLE_KEY = "visionserve.lifecycle"


@dataclass(kw_only=True, slots=True)
class Lifecycle:
    """Set by the server on SIGTERM: /readyz turns 503 while requests are still answered."""

    draining: bool = False
    # Set when models loading after the listener opened fail as a start-up would: the server
    # then exits with start-up's status instead of serving 503 for ever.
    failed: str | None = None


@dataclass(frozen=True, slots=True)
class AppState:
    """Settings, loaded models, the decode pool and metrics of one running app."""

    settings: Settings
    registry: ModelRegistry
    preparer: ImagePreparer
    metrics: ServiceMetrics
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    galleries: GalleryServices | None = None
    reloader: ModelReloader | None = None  # admin reloads and aliases
