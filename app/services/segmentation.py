"""Segment uploads: per image the classes present with pixel counts, and the mask (PNG or RLE)."""

import base64
from typing import Literal

import numpy as np

from app.observability import ServiceMetrics
from app.runtime.registry import ServedModel
from app.runtime.segmentation import MaskEncoder, SegmentedImage, SegmentInput
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
    # Masks are CPU work on whole upload-sized maps: the batcher's worker encodes each one
    # right after its forward pass, so nothing else here leaves the event loop.
    encode_mask = mask_encoder(mask_format)
    outcomes = await run_uploads(
        uploads,
        served,
        lambda image: SegmentInput(
            image.pixels, image.width, image.height, encode_mask=encode_mask
        ),
        preparer=preparer,
        timeout_s=timeout_s,
        metrics=metrics,
    )
    digests = await failed_upload_digests(uploads.images, outcomes, preparer)
    labels = served.card.labels
    results = [
        _result(index, upload.filename, outcome, digest=digests.get(index), labels=labels)
        for index, (upload, outcome) in enumerate(zip(uploads.images, outcomes, strict=True))
    ]
    return SegmentResponse(model=model_ref(served), format=mask_format, results=results)


def _result(
    index: int,
    filename: str | None,
    outcome: Outcome,
    *,
    digest: str | None,
    labels: tuple[str, ...],
) -> SegmentationResult:
    if not isinstance(outcome, tuple):
        return SegmentationResult(
            index=index, filename=filename, image_sha256=digest, error=error_body(outcome)
        )
    image, output = outcome
    prepared: PreparedImage = image
    segmented: SegmentedImage = output
    total = prepared.width * prepared.height
    classes = [
        SegmentClass(
            label=labels[class_id],
            class_id=class_id,
            pixels=int(segmented.pixels[class_id]),
            fraction=float(segmented.pixels[class_id]) / total,
        )
        for class_id in _present(segmented.pixels, largest_first=True)
    ]
    return SegmentationResult(
        index=index,
        filename=filename,
        image_sha256=prepared.sha256,
        width=prepared.width,
        height=prepared.height,
        classes=classes,
        mask=segmented.mask,
    )


def _present(pixels: np.ndarray, *, largest_first: bool) -> list[int]:
    """The class ids with pixels, by pixel count (largest first) or by id."""
    present = [int(class_id) for class_id in np.flatnonzero(pixels)]
    if largest_first:
        present.sort(key=lambda class_id: -int(pixels[class_id]))
    return present


def _png_mask(class_map: np.ndarray, pixels: np.ndarray) -> PngMask:
    return PngMask(data=base64.b64encode(encode_png(class_map)).decode("ascii"))


def _rle_mask(class_map: np.ndarray, pixels: np.ndarray) -> RleMask:
    encoded = encode_rle(class_map, _present(pixels, largest_first=False))
    return RleMask(
        classes=[
            RleClassMaskPublic(class_id=item.class_id, size=item.size, counts=item.counts)
            for item in encoded
        ]
    )


_ENCODERS: dict[MaskFormat, MaskEncoder] = {"png": _png_mask, "rle": _rle_mask}


def mask_encoder(mask_format: MaskFormat) -> MaskEncoder:
    """What turns a class map into the answer's mask in `mask_format` (run in the batch)."""
    return _ENCODERS[mask_format]
