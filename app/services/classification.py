"""Classify uploads: ranked labels per image."""

from app.observability import ServiceMetrics
from app.runtime.inference import ClassifyInput, RankedClasses
from app.runtime.registry import ServedModel
from app.schemas import ClassificationResult, ClassifyResponse, Prediction
from app.services.pipeline import Outcome, error_body, model_ref, run_uploads
from app.services.uploads import ImagePreparer, Upload


async def classify_uploads(
    uploads: list[Upload],
    served: ServedModel,
    *,
    top_k: int,
    preparer: ImagePreparer,
    timeout_s: float,
    metrics: ServiceMetrics,
) -> ClassifyResponse:
    """Answer every upload; a lone unusable upload raises its error instead."""
    outcomes = await run_uploads(
        uploads,
        served,
        lambda image: ClassifyInput(image.pixels, top_k),
        preparer=preparer,
        timeout_s=timeout_s,
        metrics=metrics,
    )
    results = [
        _result(index, upload.filename, outcome, served.card.labels)
        for index, (upload, outcome) in enumerate(zip(uploads, outcomes, strict=True))
    ]
    return ClassifyResponse(model=model_ref(served), results=results)


def _result(
    index: int, filename: str | None, outcome: Outcome, labels: tuple[str, ...]
) -> ClassificationResult:
    if not isinstance(outcome, tuple):
        return ClassificationResult(index=index, filename=filename, error=error_body(outcome))
    image, ranked = outcome
    ranking: RankedClasses = ranked
    return ClassificationResult(
        index=index,
        filename=filename,
        width=image.width,
        height=image.height,
        predictions=[
            Prediction(label=labels[class_id], class_id=class_id, score=score)
            for class_id, score in ranking
        ],
    )
