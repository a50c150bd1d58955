"""Detect objects in uploads: labelled boxes per image, in the upload's own pixels."""

from app.observability import ServiceMetrics
from app.runtime.detection import DetectedObject, DetectInput
from app.runtime.registry import ServedModel
from app.schemas import Box, DetectedObjectPublic, DetectionResult, DetectResponse
from app.services.pipeline import (
    Outcome,
    ReservedUploads,
    error_body,
    failed_upload_digests,
    model_ref,
    run_uploads,
)
from app.services.uploads import ImagePreparer


async def detect_uploads(
    uploads: ReservedUploads,
    served: ServedModel,
    *,
    score_threshold: float | None,
    max_detections: int,
    preparer: ImagePreparer,
    timeout_s: float,
    metrics: ServiceMetrics,
) -> DetectResponse:
    """Answer every upload; a lone unusable upload raises its error instead."""
    threshold = score_threshold if score_threshold is not None else _default_threshold(served)
    outcomes = await run_uploads(
        uploads,
        served,
        lambda image: DetectInput(
            image.pixels, image.width, image.height, threshold, max_detections
        ),
        preparer=preparer,
        timeout_s=timeout_s,
        metrics=metrics,
    )
    digests = await failed_upload_digests(uploads.images, outcomes, preparer)
    results = [
        _result(index, upload.filename, outcome, digests, served.card.labels)
        for index, (upload, outcome) in enumerate(zip(uploads.images, outcomes, strict=True))
    ]
    return DetectResponse(model=model_ref(served), score_threshold=threshold, results=results)


def _default_threshold(served: ServedModel) -> float:
    detection = served.card.detection
    if detection is None:  # the card's validator guarantees it for detectors
        raise ValueError(f"{served.name} has no detection spec")
    return detection.score_threshold


def _result(
    index: int,
    filename: str | None,
    outcome: Outcome,
    digests: dict[int, str],
    labels: tuple[str, ...],
) -> DetectionResult:
    if not isinstance(outcome, tuple):
        return DetectionResult(
            index=index, filename=filename, image_sha256=digests[index], error=error_body(outcome)
        )
    image, found = outcome
    objects: list[DetectedObject] = found
    return DetectionResult(
        index=index,
        filename=filename,
        image_sha256=image.sha256,
        width=image.width,
        height=image.height,
        detections=[_public(detected, labels) for detected in objects],
    )


def _public(detected: DetectedObject, labels: tuple[str, ...]) -> DetectedObjectPublic:
    x_min, y_min, x_max, y_max = detected.box
    return DetectedObjectPublic(
        label=labels[detected.class_id],
        class_id=detected.class_id,
        score=detected.score,
        box=Box(x_min=x_min, y_min=y_min, x_max=x_max, y_max=y_max),
    )
