"""Reload the model store and point aliases, off the event loop, answered as schemas."""

from functools import partial
from pathlib import Path

import anyio

from app.errors import ModelLoadError, ReloadRefused
from app.runtime.registry import RefusedModel
from app.runtime.reload import ModelChange, ModelReloader
from app.schemas import (
    AliasRequest,
    AliasResponse,
    ModelChangePublic,
    RefusedModelDescription,
    ReloadResponse,
)


async def reload_models(reloader: ModelReloader, force: bool) -> ReloadResponse:
    """Load what changed in the store and switch to it; 409 when nothing could be switched."""
    try:
        report = await anyio.to_thread.run_sync(partial(reloader.reload, force=force))
    except ModelLoadError as error:
        raise ReloadRefused(
            f"Nothing was reloaded: {error}", still_serving=_served(reloader)
        ) from error
    return ReloadResponse(
        added=[_change(item) for item in report.added],
        replaced=[_change(item) for item in report.replaced],
        kept=[_change(item) for item in report.kept],
        removed=[_change(item) for item in report.removed],
        refused=[describe_refused(item) for item in report.refused],
        defaults=report.defaults,
    )


async def point_alias(reloader: ModelReloader, request: AliasRequest) -> AliasResponse:
    """Pin a name to a served version (or unpin it) at once; saved in the store if it can."""
    models, saved = await anyio.to_thread.run_sync(
        reloader.set_alias, request.name, request.version
    )
    return AliasResponse(
        name=request.name,
        pinned=models.pins.get(request.name),
        default=models.default(request.name).ref,
        saved_to=str(saved) if isinstance(saved, Path) else None,
        not_saved_reason=saved if isinstance(saved, str) else None,
    )


def describe_refused(item: RefusedModel) -> RefusedModelDescription:
    """A refused folder as /models and reloads report it."""
    return RefusedModelDescription(
        folder=item.folder, reason=item.reason, still_serving=item.still_serving
    )


def _change(item: ModelChange) -> ModelChangePublic:
    return ModelChangePublic(
        folder=item.folder,
        model=item.ref,
        sha256=item.sha256,
        previous_model=item.previous_ref,
        previous_sha256=item.previous_sha256,
    )


def _served(reloader: ModelReloader) -> list[str]:
    return [served.ref for served in reloader.registry.models]
