"""Classify uploads: ranked labels per image and, for calibrated models, a decision."""

from app.errors import NotCalibrated
from app.observability import ServiceMetrics
from app.runtime.card import CalibrationSpec
from app.runtime.inference import ClassifiedImage, ClassifyInput
from app.runtime.openset import decide
from app.runtime.registry import ServedModel
from app.schemas import ClassificationResult, ClassifyResponse, DecisionRule, Prediction
from app.services.pipeline import (
    Outcome,
    ReservedUploads,
    error_body,
    failed_upload_digests,
    model_ref,
    run_uploads,
)
from app.services.uploads import ImagePreparer


async def classify_uploads(
    uploads: ReservedUploads,
    served: ServedModel,
    *,
    top_k: int,
    min_probability: float | None,
    preparer: ImagePreparer,
    timeout_s: float,
    metrics: ServiceMetrics,
) -> ClassifyResponse:
    """Answer every upload; a lone unusable upload raises its error instead.

    `min_probability` overrides the card's accept probability for this request's decisions.
    """
    if min_probability is not None and served.card.calibration is None:
        raise NotCalibrated(
            f"{served.name} has no calibration, so it makes no decisions and "
            "min_probability does not apply.",
            model=served.name,
        )
    outcomes = await run_uploads(
        uploads,
        served,
        lambda image: ClassifyInput(image.pixels, top_k),
        preparer=preparer,
        timeout_s=timeout_s,
        metrics=metrics,
    )
    rule = _decision_rule(served.card.calibration, min_probability)
    digests = await failed_upload_digests(uploads.images, outcomes, preparer)
    results = [
        _result(
            index, upload.filename, outcome, digests=digests, labels=served.card.labels, rule=rule
        )
        for index, (upload, outcome) in enumerate(zip(uploads.images, outcomes, strict=True))
    ]
    return ClassifyResponse(
        model=model_ref(served), calibrated=rule is not None, decision_rule=rule, results=results
    )


def _decision_rule(
    calibration: CalibrationSpec | None, min_probability: float | None
) -> DecisionRule | None:
    if calibration is None:
        return None
    accept = calibration.accept_probability if min_probability is None else min_probability
    return DecisionRule(
        accept_probability=accept,
        unknown_threshold=calibration.open_set.threshold,
        open_set_method=calibration.open_set.method,
    )


def _result(
    index: int,
    filename: str | None,
    outcome: Outcome,
    *,
    digests: dict[int, str],
    labels: tuple[str, ...],
    rule: DecisionRule | None,
) -> ClassificationResult:
    if not isinstance(outcome, tuple):
        return ClassificationResult(
            index=index, filename=filename, image_sha256=digests[index], error=error_body(outcome)
        )
    image, output = outcome
    classified: ClassifiedImage = output
    result = ClassificationResult(
        index=index,
        filename=filename,
        image_sha256=image.sha256,
        width=image.width,
        height=image.height,
        predictions=[
            Prediction(label=labels[class_id], class_id=class_id, score=score)
            for class_id, score in classified.ranking
        ],
    )
    if rule is None or classified.unknown_score is None:
        return result
    result.unknown_score = classified.unknown_score
    result.decision = decide(
        classified.ranking[0][1],
        classified.unknown_score,
        accept_probability=rule.accept_probability,
        threshold=rule.unknown_threshold,
    )
    return result
