"""POST /segment."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.api.deps import SegmentCallDep
from app.api.responses import ERROR_RESPONSES
from app.api.uploads import IMAGE_REQUEST_BODY
from app.schemas import SegmentResponse
from app.services.segmentation import segment_uploads

router = APIRouter(tags=["inference"])


@router.post(
    "/segment",
    response_model=SegmentResponse,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    openapi_extra=IMAGE_REQUEST_BODY,
)
async def segment(
    call: SegmentCallDep,
    mask_format: Annotated[
        Literal["png", "rle"],
        Query(alias="format", description="png: one indexed PNG; rle: COCO RLE per class."),
    ] = "png",
) -> SegmentResponse:
    """Segment one or more images; masks are the size of each upload after EXIF orientation."""
    state = call.state
    return await segment_uploads(
        call.uploads,
        call.served,
        mask_format=mask_format,
        preparer=state.preparer,
        timeout_s=state.settings.request_timeout_s,
        metrics=state.metrics,
    )
