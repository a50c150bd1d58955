"""Liveness, readiness and Prometheus metrics."""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import StateDep
from app.api.responses import ERROR_RESPONSES
from app.schemas import HealthResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process is alive (it says nothing about models)."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=HealthResponse, responses=ERROR_RESPONSES)
async def readyz(state: StateDep) -> HealthResponse:
    """200 only when every model is loaded and warmed up; 503 not_ready otherwise."""
    return HealthResponse(status=f"ready: {len(state.registry.models)} model(s)")


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, state: StateDep) -> Response:
    """Prometheus text exposition."""
    for served in state.registry.models:
        state.metrics.queue_depth.labels(served.name).set(served.batcher.waiting)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
