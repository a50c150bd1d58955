"""Liveness, readiness and Prometheus metrics."""

from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import StateDep
from app.api.responses import ERROR_RESPONSES
from app.api.state import AppState
from app.errors import NotReady, ServiceError
from app.runtime.card import Task
from app.schemas import HealthResponse

router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])

# A configured default set to this serves that task without a default model.
NO_DEFAULT = "none"


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process is alive (it says nothing about models)."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=HealthResponse, responses=ERROR_RESPONSES)
async def readyz(state: StateDep) -> HealthResponse:
    """200 only when every model is warmed up, the default models exist, and not stopping."""
    if state.lifecycle.draining:
        raise NotReady("The service is shutting down.")
    problems = _default_model_problems(state)
    if problems:
        raise NotReady("A configured default model is not served.", problems=problems)
    return HealthResponse(status=f"ready: {len(state.registry.models)} model(s)")


async def get_started_state(request: Request) -> AppState:
    """The app's state once the lifespan has begun, models loaded or not (metrics while loading)."""
    state: AppState | None = getattr(request.app.state, "services", None)
    if state is None:
        raise NotReady("The service is starting.")
    return state


@metrics_router.get("/metrics", response_class=Response)
async def metrics(state: Annotated[AppState, Depends(get_started_state)]) -> Response:
    """Prometheus text exposition (also while models load)."""
    waiting: dict[str, int] = {}
    for served in state.registry.models:  # versions of one name share its label
        waiting[served.name] = waiting.get(served.name, 0) + served.batcher.waiting
    for name, count in waiting.items():
        state.metrics.queue_depth.labels(name).set(count)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _default_model_problems(state: AppState) -> list[str]:
    problems = []
    for task in get_args(Task):
        name = state.settings.default_model(task)
        if name == NO_DEFAULT:
            continue
        try:
            state.registry.get_for_task(name, task)
        except ServiceError as error:
            problems.append(error.message)
    return problems
