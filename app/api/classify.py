"""POST /classify."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ClassifyCallDep
from app.api.responses import ERROR_RESPONSES
from app.api.uploads import IMAGE_REQUEST_BODY
from app.schemas import ClassifyResponse
from app.services.classification import classify_uploads

router = APIRouter(tags=["inference"])


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    openapi_extra=IMAGE_REQUEST_BODY,
)
async def classify(
    call: ClassifyCallDep,
    *,
    top_k: Annotated[int, Query(ge=1, le=100, description="Classes per image.")] = 5,
    min_probability: Annotated[
        float | None,
        Query(
            ge=0.0,
            le=1.0,
            description="Accept threshold for `decision: match` on this request "
            "(default: the card's); calibrated models only.",
        ),
    ] = None,
    explain: Annotated[
        bool, Query(description="Add a heat map of where the model saw its top class.")
    ] = False,
) -> ClassifyResponse:
    """Classify one or more images (multipart `image` fields, or a raw image/* body)."""
    state = call.state
    return await classify_uploads(
        call.uploads,
        call.served,
        top_k=top_k,
        min_probability=min_probability,
        preparer=state.preparer,
        timeout_s=state.settings.request_timeout_s,
        metrics=state.metrics,
        explain=explain,
    )
