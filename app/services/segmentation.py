"""Segment uploads: per image the classes present with pixel counts, and the mask (PNG or RLE)."""

import base64
from typing import Literal

from app.observability import ServiceMetrics
from app.runtime.registry import ServedModel
from app.runtime.segmentation import SegmentedImage, SegmentInput
from app.schemas import (
    PngMask,
    RleClassMaskPublic,
    RleMask,
    SegmentationResult,
    SegmentClass,
    SegmentResponse,
)
from app.services.masks import encode_png, encode_rle
from app.services.pipeline import (
    Outcome,
    ReservedUploads,
    error_body,
    failed_upload_digests,
    model_ref,
    run_uploads,
)
from app.services.uploads import ImagePreparer, PreparedImage

MaskFormat = Literal["png", "rle"]


async def segment_uploads(
    uploads: ReservedUploads,
    served: ServedModel,
    *,
    mask_format: MaskFormat,
    preparer: ImagePreparer,
    timeout_s: float,
    metrics: ServiceMetrics,
) -> SegmentResponse:
    """Answer every upload; a lone unusable upload raises its error instead."""
    outcomes = await run_uploads(
        uploads,
        served,
        lambda image: SegmentInput(image.pixels, image.width, image.height),
        preparer=preparer,
        timeout_s=timeout_s,
        metrics=metrics,
    )
    digests = await failed_upload_digests(uploads.images, outcomes, preparer)
    labels = served.card.labels
    # Mask encoding is CPU work on whole upload-sized maps: the decode pool does it.
    results = await preparer.run(
        lambda: [
            _result(
                index,
                upload.filename,
                outcome,
                digest=digests.get(index),
                labels=labels,
                mask_format=mask_format,
            )
            for index, (upload, outcome) in enumerate(zip(uploads.images, outcomes, strict=True))
        ]
    )
    return SegmentResponse(model=model_ref(served), format=mask_format, results=results)


def _result(
    index: int,
    filename: str | None,
    outcome: Outcome,
    *,
    digest: str | None,
    labels: tuple[str, ...],
    mask_format: MaskFormat,
) -> SegmentationResult:
    if not isinstance(outcome, tuple):
        return SegmentationResult(
            index=index, filename=filename, image_sha256=digest, error=error_body(outcome)
        )
    image, output = outcome
    prepared: PreparedImage = image
    segmented: SegmentedImage = output
    total = prepared.width * prepared.height
    present = [int(class_id) for class_id in segmented.pixels.argsort()[::-1]]
    present = [class_id for class_id in present if segmented.pixels[class_id] > 0]
    classes = [
        SegmentClass(
            label=labels[class_id],
            class_id=class_id,
            pixels=int(segmented.pixels[class_id]),
            fraction=float(segmented.pixels[class_id]) / total,
        )
        for class_id in present
    ]
    return SegmentationResult(
        index=index,
        filename=filename,
        image_sha256=prepared.sha256,
        width=prepared.width,
        height=prepared.height,
        classes=classes,
        mask=_mask(segmented, sorted(present), mask_format),
    )


def _mask(
    segmented: SegmentedImage, class_ids: list[int], mask_format: MaskFormat
) -> PngMask | RleMask:
    if mask_format == "png":
        return PngMask(data=base64.b64encode(encode_png(segmented.class_map)).decode("ascii"))
    encoded = encode_rle(segmented.class_map, class_ids)
    return RleMask(
        classes=[
            RleClassMaskPublic(class_id=item.class_id, size=item.size, counts=item.counts)
            for item in encoded
        ]
    )
