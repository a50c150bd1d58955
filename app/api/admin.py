"""Admin routes (reload the model store, point an alias), behind one guard: `require_admin`."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.api.deps import StateDep, require_admin
from app.api.responses import ERROR_RESPONSES
from app.schemas import AliasRequest, AliasResponse, ReloadResponse
from app.services.model_admin import point_alias, reload_models

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post("/models/reload", response_model=ReloadResponse, responses=ERROR_RESPONSES)
async def reload(
    state: StateDep,
    force: Annotated[bool, Query(description="reload unchanged folders too")] = False,
) -> ReloadResponse:
    """Load what changed in the store beside the served models, then switch without downtime."""
    assert state.reloader is not None  # the lifespan builds it with the registry
    return await reload_models(state.reloader, force)


@router.post("/models/alias", response_model=AliasResponse, responses=ERROR_RESPONSES)
async def alias(request: AliasRequest, state: StateDep) -> AliasResponse:
    """Point a bare name at one of its served versions (rollback), at once, with no reload."""
    assert state.reloader is not None
    return await point_alias(state.reloader, request)
