"""Dependencies, declared once as Annotated aliases so routes read like prose."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.api.state import AppState
from app.api.uploads import read_uploads
from app.config import Settings
from app.errors import NotReady, ValidationFailed
from app.galleries.records import NAME_PATTERN
from app.request_context import note
from app.runtime.card import Task
from app.runtime.registry import ModelRegistry, ServedModel
from app.schemas import GalleryCreateRequest
from app.security.keyring import KeyRing
from app.security.keys import ApiKey, Scope
from app.services.galleries import GalleryServices, GalleryTarget, gallery_target
from app.services.pipeline import ReservedUploads

_bearer = HTTPBearer(
    auto_error=False, description="An API key (VISION_API_KEYS_FILE or VISION_API_KEYS)."
)
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


# The state, settings and registry dependencies read the app state themselves rather than
# depend on get_state: FastAPI walks a shared dependency's own sub-dependencies again on every
# path that reaches it (its cache applies only after the walk), and that walk was about 40% of
# the event loop's Python time per /segment request (README, Performance).


def _running_state(request: Request) -> AppState:
    state: AppState | None = getattr(request.app.state, "services", None)
    if state is None or not state.registry.ready:
        raise NotReady("Models are still loading or the service is stopping.")
    return state


async def get_state(request: Request) -> AppState:
    """The running app's state, or 503 while models are still loading."""
    return _running_state(request)


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with (503 while models are still loading)."""
    return _running_state(request).settings


async def get_registry(request: Request) -> ModelRegistry:
    """The loaded models (503 while they are still loading)."""
    return _running_state(request).registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]


async def get_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
) -> ApiKey:
    """Who the request's key belongs to (Bearer or X-API-Key; either will do); 401 if none.

    An open service (no keys configured) lets everyone in as `anonymous`, admin routes excepted.
    """
    keyring: KeyRing = request.app.state.keyring
    offered = [bearer.credentials if bearer is not None else None, header_key]
    key = keyring.authenticate(offered)
    if not key.anonymous:
        note(key_name=key.name)  # the name, never the key, for the access line and metrics
    return key


ApiKeyDep = Annotated[ApiKey, Depends(get_api_key)]


def require_scope(scope: Scope) -> Callable[[ApiKey], Awaitable[ApiKey]]:
    """A dependency that lets a request in when its key holds `scope` (else 401 or 403)."""

    async def check_scope(key: ApiKeyDep) -> ApiKey:
        key.require_scope(scope)
        return key

    check_scope.__name__ = f"require_scope_{scope.replace(':', '_')}"
    return check_scope


# Any valid key, whatever its scopes.
require_api_key = get_api_key
# The admin routes' guard: a key with the admin scope; closed when the service has no keys.
require_admin = require_scope("admin")


async def reject_unknown_query(request: Request) -> None:
    """422 for query parameters the route does not declare (a typo must not pass silently)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = _declared_query(route.dependant)
    unknown = sorted(set(request.query_params) - declared)
    if unknown:
        raise ValidationFailed(
            f"Unknown query parameter(s): {', '.join(unknown)}.",
            unknown=unknown,
            allowed=sorted(declared),
        )


def _declared_query(dependant: Dependant) -> frozenset[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _declared_query(sub)
    return frozenset(names)


async def get_classifier(
    state: StateDep,
    key: ApiKeyDep,
    model: Annotated[str | None, Query(description="Model name; default from settings.")] = None,
) -> ServedModel:
    """The classifier the request names, or the default one; 503 at once if its queue is full."""
    return _admitted(state.registry, key, model or state.settings.default_classifier, "classify")


async def get_detector(
    state: StateDep,
    key: ApiKeyDep,
    model: Annotated[str | None, Query(description="Model name; default from settings.")] = None,
) -> ServedModel:
    """The detector the request names, or the default one; 503 at once if its queue is full."""
    return _admitted(state.registry, key, model or state.settings.default_detector, "detect")


async def get_segmenter(
    state: StateDep,
    key: ApiKeyDep,
    model: Annotated[str | None, Query(description="Model name; default from settings.")] = None,
) -> ServedModel:
    """The segmenter the request names, or the default one; 503 at once if its queue is full."""
    return _admitted(state.registry, key, model or state.settings.default_segmenter, "segment")


def _admitted(registry: ModelRegistry, key: ApiKey, name: str, task: Task) -> ServedModel:
    """The model `name` of `task`, named in the access line, allowed for the key, with room in
    its queue (503 at once, before the body is read: overload costs no upload)."""
    served = registry.get_for_task(name, task)
    note(model=served.name, model_version=served.card.version)
    key.require_model(served.name)
    served.batcher.refuse_if_full()
    return served


async def get_galleries(state: StateDep) -> GalleryServices:
    """The gallery store and indexes (opened in the lifespan)."""
    assert state.galleries is not None  # the lifespan opens the store before serving
    return state.galleries


ClassifierDep = Annotated[ServedModel, Depends(get_classifier)]
GalleriesDep = Annotated[GalleryServices, Depends(get_galleries)]
DetectorDep = Annotated[ServedModel, Depends(get_detector)]
SegmenterDep = Annotated[ServedModel, Depends(get_segmenter)]


async def reserved_uploads(
    request: Request, settings: Settings, served: ServedModel
) -> AsyncIterator[ReservedUploads]:
    """The uploads, with their slots in `served`'s queue reserved before any decoding.

    The queue is asked for room as each image begins to arrive, so a full queue is refused
    (503) within one image's bytes, never after the whole body; the slots no image used are
    given back when the route returns.
    """
    batcher = served.batcher
    arrived = 0

    def check_room() -> None:
        nonlocal arrived
        arrived += 1
        batcher.refuse_unless_room(arrived)

    images = await read_uploads(request, settings, check_room)
    note(images=len(images))
    with batcher.reserve(len(images)) as reservation:
        yield ReservedUploads(images=images, reservation=reservation)


async def get_classifier_uploads(
    request: Request, settings: SettingsDep, served: ClassifierDep
) -> AsyncIterator[ReservedUploads]:
    """The uploads, reserved in the classifier's queue."""
    async for uploads in reserved_uploads(request, settings, served):
        yield uploads


async def get_detector_uploads(
    request: Request, settings: SettingsDep, served: DetectorDep
) -> AsyncIterator[ReservedUploads]:
    """The uploads, reserved in the detector's queue."""
    async for uploads in reserved_uploads(request, settings, served):
        yield uploads


async def get_segmenter_uploads(
    request: Request, settings: SettingsDep, served: SegmenterDep
) -> AsyncIterator[ReservedUploads]:
    """The uploads, reserved in the segmenter's queue."""
    async for uploads in reserved_uploads(request, settings, served):
        yield uploads


# scope="function": unused slots return as soon as the route returns, before the answer is sent.
ClassifierUploadsDep = Annotated[ReservedUploads, Depends(get_classifier_uploads, scope="function")]
DetectorUploadsDep = Annotated[ReservedUploads, Depends(get_detector_uploads, scope="function")]
SegmenterUploadsDep = Annotated[ReservedUploads, Depends(get_segmenter_uploads, scope="function")]

GalleryName = Annotated[
    str, Path(pattern=NAME_PATTERN, description="1-128 characters of [A-Za-z0-9._-]")
]


async def get_gallery_target(
    gallery: GalleryName, services: GalleriesDep, key: ApiKeyDep
) -> GalleryTarget:
    """The gallery and its bound model (404, 409, 403 when the key may not use that model),
    refused at once if the model's queue is full."""
    target = await gallery_target(services, gallery)
    note(model=target.served.name, model_version=target.served.card.version)
    key.require_model(target.served.name)
    target.served.batcher.refuse_if_full()
    return target


GalleryTargetDep = Annotated[GalleryTarget, Depends(get_gallery_target)]


async def get_gallery_create(body: GalleryCreateRequest, key: ApiKeyDep) -> GalleryCreateRequest:
    """A gallery creation, refused (403) when the key may not use the model it names."""
    key.require_model(body.model)
    return body


GalleryCreateDep = Annotated[GalleryCreateRequest, Depends(get_gallery_create)]


async def get_gallery_uploads(
    request: Request, settings: SettingsDep, target: GalleryTargetDep
) -> AsyncIterator[ReservedUploads]:
    """The uploads, reserved in the queue of the gallery's model."""
    async for uploads in reserved_uploads(request, settings, target.served):
        yield uploads


GalleryUploadsDep = Annotated[ReservedUploads, Depends(get_gallery_uploads, scope="function")]
