"""Classify uploads: prepare each image, one batched forward pass, ranked labels per image."""

import asyncio
from collections.abc import Iterator

from app.errors import InferenceTimeout, ServiceError
from app.observability import ServiceMetrics
from app.runtime.inference import ClassifyInput, RankedClasses
from app.runtime.registry import ServedModel
from app.schemas import ClassificationResult, ClassifyResponse, ErrorBody, ModelRef, Prediction
from app.services.uploads import ImagePreparer, PreparedImage, Upload


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
    try:
        async with asyncio.timeout(timeout_s):
            served.batcher.expect(len(uploads))
            try:
                prepared = await preparer.prepare_all(uploads, served.card.input)
            finally:
                served.batcher.expect(-len(uploads))
            usable = [item for item in prepared if isinstance(item, PreparedImage)]
            ranked = await served.batcher.submit_many(
                [ClassifyInput(item.pixels, top_k) for item in usable]
            )
    except TimeoutError:
        raise InferenceTimeout(f"No answer within {timeout_s} s.", timeout_s=timeout_s) from None
    if len(uploads) == 1 and isinstance(prepared[0], ServiceError):
        metrics.images.labels(served.name, prepared[0].code).inc()
        raise prepared[0]
    rankings = iter(ranked)
    results = [
        _result(index, upload, item, rankings, served)
        for index, (upload, item) in enumerate(zip(uploads, prepared, strict=True))
    ]
    for result in results:
        metrics.images.labels(served.name, result.error.code if result.error else "ok").inc()
    return ClassifyResponse(model=model_ref(served), results=results)


def model_ref(served: ServedModel) -> ModelRef:
    """The exact model that answered."""
    return ModelRef(name=served.name, version=served.card.version, sha256=served.loaded.sha256)


def _result(
    index: int,
    upload: Upload,
    item: PreparedImage | ServiceError,
    rankings: Iterator[RankedClasses],
    served: ServedModel,
) -> ClassificationResult:
    if isinstance(item, ServiceError):
        return ClassificationResult(
            index=index, filename=upload.filename, error=ErrorBody(**item.to_body())
        )
    labels = served.card.labels
    predictions = [
        Prediction(label=labels[class_id], class_id=class_id, score=score)
        for class_id, score in next(rankings)
    ]
    return ClassificationResult(
        index=index,
        filename=upload.filename,
        width=item.width,
        height=item.height,
        predictions=predictions,
    )
