"""POST /detect."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import DetectCallDep
from app.api.responses import ERROR_RESPONSES
from app.api.uploads import IMAGE_REQUEST_BODY
from app.schemas import DetectResponse
from app.services.detection import detect_uploads

router = APIRouter(tags=["inference"])


@router.post(
    "/detect",
    response_model=DetectResponse,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    openapi_extra=IMAGE_REQUEST_BODY,
)
async def detect(
    call: DetectCallDep,
    score_threshold: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="Default: the model card's.")
    ] = None,
    max_detections: Annotated[int, Query(ge=1, le=300, description="Boxes per image.")] = 100,
) -> DetectResponse:
    """Detect objects in one or more images; boxes are in each upload's upright pixels."""
    state = call.state
    return await detect_uploads(
        call.uploads,
        call.served,
        score_threshold=score_threshold,
        max_detections=max_detections,
        preparer=state.preparer,
        timeout_s=state.settings.request_timeout_s,
        metrics=state.metrics,
    )
