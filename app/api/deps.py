"""Dependencies, declared once as Annotated aliases so routes read like prose."""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
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


# FastAPI walks a shared dependency's own sub-dependencies again on every path that reaches it
# (its cache applies only after the walk); under cProfile that walk was the largest item of the
# event loop's Python time per request (README, Performance: 0.1-0.6 ms measured). So the
# state, settings and registry dependencies read the app state themselves, and each image route
# solves its key, model and uploads as ONE dependency (`inference_call`, `gallery_call`):
# /segment went from 26 solved dependencies to 17, then to 3 (that one and its two key headers;
# match 20 -> 5), besides the app-wide unknown-query check.


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


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
HeaderKeyDep = Annotated[str | None, Depends(_api_key_header)]


def _authenticated(
    request: Request, bearer: HTTPAuthorizationCredentials | None, header_key: str | None
) -> ApiKey:
    keyring: KeyRing = request.app.state.keyring
    offered = [bearer.credentials if bearer is not None else None, header_key]
    key = keyring.authenticate(offered)
    if not key.anonymous:
        note(key_name=key.name)  # the name, never the key, for the access line and metrics
    return key


async def get_api_key(request: Request, bearer: BearerDep, header_key: HeaderKeyDep) -> ApiKey:
    """Who the request's key belongs to (Bearer or X-API-Key; either will do); 401 if none.

    An open service (no keys configured) lets everyone in as `anonymous`, admin routes excepted.
    """
    return _authenticated(request, bearer, header_key)


ApiKeyDep = Annotated[ApiKey, Depends(get_api_key)]


def require_scope(scope: Scope) -> Callable[[ApiKey], Awaitable[ApiKey]]:
    """A dependency that lets a request in when its key holds `scope` (else 401 or 403)."""

    async def check_scope(key: ApiKeyDep) -> ApiKey:
        key.require_scope(scope)
        return key

    check_scope.__name__ = f"require_scope_{scope.replace(':', '_')}"
    return check_scope


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


ModelQuery = Annotated[str | None, Query(description="Model name; default from settings.")]


@dataclass(frozen=True, kw_only=True)
class InferenceCall:
    """What an image route needs: the running state, its model and the reserved uploads."""

    state: AppState
    served: ServedModel
    uploads: ReservedUploads


def inference_call(task: Task) -> Callable[..., AsyncIterator[InferenceCall]]:
    """The dependency of the route of `task` (whose scope has the task's name).

    In order: the key (401) and its scope (403), readiness (503), the model the request names or
    the default one (404, 409 wrong task, 403 for the key), room in its queue (503 at once, before
    the body is read), then the uploads with their slots reserved; the slots no image used are
    given back when the route returns.
    """

    async def solve(
        request: Request, bearer: BearerDep, header_key: HeaderKeyDep, model: ModelQuery = None
    ) -> AsyncIterator[InferenceCall]:
        key = _authenticated(request, bearer, header_key)
        key.require_scope(task)
        state = _running_state(request)
        name = model or state.settings.default_model(task)
        served = _admit(state.registry.get_for_task(name, task), key)
        async for uploads in reserved_uploads(request, state.settings, served):
            yield InferenceCall(state=state, served=served, uploads=uploads)

    solve.__name__ = f"{task}_call"
    return solve


def _admit(served: ServedModel, key: ApiKey) -> ServedModel:
    """`served`, named in the access line, if the key may use it (403) and its queue has room
    (503 at once, before the body is read: overload costs no upload)."""
    note(model=served.name, model_version=served.card.version)
    key.require_model(served.name)
    served.batcher.refuse_if_full()
    return served


async def get_galleries(request: Request) -> GalleryServices:
    """The gallery store and indexes (opened in the lifespan; 503 while models load)."""
    return _gallery_services(_running_state(request))


def _gallery_services(state: AppState) -> GalleryServices:
    assert state.galleries is not None  # the lifespan opens the store before serving
    return state.galleries


GalleriesDep = Annotated[GalleryServices, Depends(get_galleries)]


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


# scope="function": unused slots return as soon as the route returns, before the answer is sent.
ClassifyCallDep = Annotated[InferenceCall, Depends(inference_call("classify"), scope="function")]
DetectCallDep = Annotated[InferenceCall, Depends(inference_call("detect"), scope="function")]
SegmentCallDep = Annotated[InferenceCall, Depends(inference_call("segment"), scope="function")]

GalleryName = Annotated[
    str, Path(pattern=NAME_PATTERN, description="1-128 characters of [A-Za-z0-9._-]")
]


async def get_gallery_create(body: GalleryCreateRequest, key: ApiKeyDep) -> GalleryCreateRequest:
    """A gallery creation, refused (403) when the key may not use the model it names."""
    key.require_model(body.model)
    return body


GalleryCreateDep = Annotated[GalleryCreateRequest, Depends(get_gallery_create)]


@dataclass(frozen=True, kw_only=True)
class GalleryCall:
    """What a route that embeds into a gallery needs: the store, the gallery and its model, and
    the reserved uploads."""

    services: GalleryServices
    target: GalleryTarget
    uploads: ReservedUploads


def gallery_call(scope: Scope) -> Callable[..., AsyncIterator[GalleryCall]]:
    """The dependency of a route that embeds uploads for a gallery, for keys holding `scope`.

    In order: the key (401) and scope (403), readiness (503), the gallery (404) and its bound
    model (409; 403 for the key), room in the model's queue (503 at once), then the uploads
    with their slots reserved (as `inference_call`).
    """

    # The key is a sub-dependency, so it is solved before `gallery` is validated: a request
    # without a key gets 401, not a 422 about the name.
    async def solve(
        request: Request,
        gallery: GalleryName,
        key: Annotated[ApiKey, Depends(require_scope(scope))],
    ) -> AsyncIterator[GalleryCall]:
        state = _running_state(request)
        services = _gallery_services(state)
        target = await gallery_target(services, gallery)
        _admit(target.served, key)
        async for uploads in reserved_uploads(request, state.settings, target.served):
            yield GalleryCall(services=services, target=target, uploads=uploads)

    solve.__name__ = f"gallery_call_{scope.replace(':', '_')}"
    return solve


MatchCallDep = Annotated[GalleryCall, Depends(gallery_call("galleries:read"), scope="function")]
AddReferencesCallDep = Annotated[
    GalleryCall, Depends(gallery_call("galleries:write"), scope="function")
]
