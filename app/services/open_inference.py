"""Open Inference Protocol v2 answers: the /classify, /detect and /segment results as tensors.

The images go through the same services (and so the same batcher, limits and errors) as
/classify, /detect and /segment; this module only names the parameters and lays the results
out as tensors, one row per image. Rows are padded to the longest (top_k classes, the image
with the most boxes, or the most classes present) with class id -1, score 0 and an empty label;
COUNT says how many are real. A mask is one BYTES element per image: the same indexed PNG as
/segment's (uploads differ in size, so masks cannot share one UINT8 tensor).
"""

import base64
from dataclasses import dataclass
from typing import Any

from app.errors import ValidationFailed, WrongTask
from app.observability import ServiceMetrics
from app.runtime.card import ModelCard
from app.runtime.registry import ServedModel
from app.schemas import (
    ClassifyResponse,
    DetectResponse,
    ErrorBody,
    PngMask,
    SegmentationResult,
    SegmentResponse,
)
from app.services.classification import classify_uploads
from app.services.detection import detect_uploads
from app.services.pipeline import ReservedUploads
from app.services.segmentation import segment_uploads
from app.services.uploads import ImagePreparer

IMAGE_INPUT = "IMAGE"
# Request parameters the protocol itself defines; the others are the routes' query parameters.
PROTOCOL_PARAMETERS = frozenset({"binary_data_output"})
CLASSIFY_PARAMETERS = frozenset({"top_k", "min_probability"})
DETECT_PARAMETERS = frozenset({"score_threshold", "max_detections"})
SEGMENT_PARAMETERS: frozenset[str] = frozenset()

_COMMON_OUTPUTS = (
    ("COUNT", "INT32", [-1]),
    ("WIDTH", "INT32", [-1]),
    ("HEIGHT", "INT32", [-1]),
    ("IMAGE_SHA256", "BYTES", [-1]),
    ("ERROR", "BYTES", [-1]),
)
CLASSIFY_OUTPUTS = (
    ("LABEL", "BYTES", [-1, -1]),
    ("CLASS_ID", "INT64", [-1, -1]),
    ("SCORE", "FP32", [-1, -1]),
    ("DECISION", "BYTES", [-1]),
    ("UNKNOWN_SCORE", "FP32", [-1]),
    *_COMMON_OUTPUTS,
)
DETECT_OUTPUTS = (
    ("BOX", "FP32", [-1, -1, 4]),
    ("LABEL", "BYTES", [-1, -1]),
    ("CLASS_ID", "INT64", [-1, -1]),
    ("SCORE", "FP32", [-1, -1]),
    *_COMMON_OUTPUTS,
)
SEGMENT_OUTPUTS = (
    ("MASK", "BYTES", [-1]),
    ("LABEL", "BYTES", [-1, -1]),
    ("CLASS_ID", "INT64", [-1, -1]),
    ("PIXELS", "INT64", [-1, -1]),
    *_COMMON_OUTPUTS,
)
_OUTPUTS = {"classify": CLASSIFY_OUTPUTS, "detect": DETECT_OUTPUTS, "segment": SEGMENT_OUTPUTS}
_PARAMETERS = {
    "classify": CLASSIFY_PARAMETERS,
    "detect": DETECT_PARAMETERS,
    "segment": SEGMENT_PARAMETERS,
}


@dataclass(frozen=True, kw_only=True)
class Tensor:
    """A named output: datatype, shape and row-major elements."""

    name: str
    datatype: str
    shape: list[int]
    elements: list[Any]


@dataclass(frozen=True, kw_only=True)
class InferContext:
    """What the services need besides the uploads."""

    preparer: ImagePreparer
    timeout_s: float
    metrics: ServiceMetrics


def output_specs(card: ModelCard) -> tuple[tuple[str, str, list[int]], ...]:
    """(name, datatype, shape) of every output a model of this card answers with."""
    if card.task not in _OUTPUTS:
        raise WrongTask(
            f"Model {card.name!r} ({card.task}) is not served over /v2.", model=card.name
        )
    return _OUTPUTS[card.task]


async def infer_tensors(
    uploads: ReservedUploads, served: ServedModel, parameters: dict[str, Any], context: InferContext
) -> list[Tensor]:
    """Run the model's task on the uploads; its outputs as tensors (all of them)."""
    task = served.card.task
    output_specs(served.card)  # refuses other tasks before any work
    allowed = _PARAMETERS[task]
    unknown = sorted(set(parameters) - allowed - PROTOCOL_PARAMETERS)
    if unknown:
        raise ValidationFailed(
            f"Unknown parameter(s) for a {task} model: {', '.join(unknown)}.",
            unknown=unknown,
            allowed=sorted(allowed),
        )
    options = {name: parameters[name] for name in allowed if name in parameters}
    if task == "segment":
        segmented = await segment_uploads(
            uploads,
            served,
            mask_format="png",
            preparer=context.preparer,
            timeout_s=context.timeout_s,
            metrics=context.metrics,
        )
        return segmentation_tensors(segmented)
    if task == "classify":
        top_k = _number(options, "top_k", int, 5, (1, 100))
        min_probability = _number(options, "min_probability", float, None, (0.0, 1.0))
        answer = await classify_uploads(
            uploads,
            served,
            top_k=top_k,
            min_probability=min_probability,
            preparer=context.preparer,
            timeout_s=context.timeout_s,
            metrics=context.metrics,
        )
        return classification_tensors(answer)
    detected = await detect_uploads(
        uploads,
        served,
        score_threshold=_number(options, "score_threshold", float, None, (0.0, 1.0)),
        max_detections=_number(options, "max_detections", int, 100, (1, 300)),
        preparer=context.preparer,
        timeout_s=context.timeout_s,
        metrics=context.metrics,
    )
    return detection_tensors(detected)


def classification_tensors(answer: ClassifyResponse) -> list[Tensor]:
    """LABEL, CLASS_ID, SCORE [N, K]; DECISION, UNKNOWN_SCORE [N]; the common outputs."""
    rows = [result.predictions or [] for result in answer.results]
    n = len(rows)
    return [
        _grid("LABEL", "BYTES", rows, lambda p: p.label.encode(), b""),
        _grid("CLASS_ID", "INT64", rows, lambda p: p.class_id, -1),
        _grid("SCORE", "FP32", rows, lambda p: p.score, 0.0),
        Tensor(
            name="DECISION",
            datatype="BYTES",
            shape=[n],
            elements=[(result.decision or "").encode() for result in answer.results],
        ),
        Tensor(
            name="UNKNOWN_SCORE",
            datatype="FP32",
            shape=[n],
            elements=[result.unknown_score or 0.0 for result in answer.results],
        ),
        *_common([len(row) for row in rows], answer.results),
    ]


def detection_tensors(answer: DetectResponse) -> list[Tensor]:
    """BOX [N, M, 4] (x_min, y_min, x_max, y_max); LABEL, CLASS_ID, SCORE [N, M]; common."""
    rows = [result.detections or [] for result in answer.results]
    width = max((len(row) for row in rows), default=0)
    n = len(rows)
    boxes = [[(d.box.x_min, d.box.y_min, d.box.x_max, d.box.y_max) for d in row] for row in rows]
    return [
        Tensor(
            name="BOX",
            datatype="FP32",
            shape=[n, width, 4],
            elements=[v for row in boxes for box in _pad(row, width, (0.0,) * 4) for v in box],
        ),
        _grid("LABEL", "BYTES", rows, lambda d: d.label.encode(), b""),
        _grid("CLASS_ID", "INT64", rows, lambda d: d.class_id, -1),
        _grid("SCORE", "FP32", rows, lambda d: d.score, 0.0),
        *_common([len(row) for row in rows], answer.results),
    ]


def segmentation_tensors(answer: SegmentResponse) -> list[Tensor]:
    """MASK [N] (indexed PNG, values = class ids); LABEL, CLASS_ID, PIXELS [N, K]; common."""
    rows = [result.classes or [] for result in answer.results]
    return [
        Tensor(
            name="MASK",
            datatype="BYTES",
            shape=[len(rows)],
            elements=[_png_mask(result) for result in answer.results],
        ),
        _grid("LABEL", "BYTES", rows, lambda c: c.label.encode(), b""),
        _grid("CLASS_ID", "INT64", rows, lambda c: c.class_id, -1),
        _grid("PIXELS", "INT64", rows, lambda c: c.pixels, 0),
        *_common([len(row) for row in rows], answer.results),
    ]


def _png_mask(result: SegmentationResult) -> bytes:
    if not isinstance(result.mask, PngMask):
        return b""  # that image's error is in ERROR
    return base64.b64decode(result.mask.data)


def _common(counts: list[int], results: list[Any]) -> list[Tensor]:
    n = len(results)
    return [
        Tensor(name="COUNT", datatype="INT32", shape=[n], elements=counts),
        Tensor(name="WIDTH", datatype="INT32", shape=[n], elements=[r.width or 0 for r in results]),
        Tensor(
            name="HEIGHT", datatype="INT32", shape=[n], elements=[r.height or 0 for r in results]
        ),
        Tensor(
            name="IMAGE_SHA256",
            datatype="BYTES",
            shape=[n],
            elements=[(r.image_sha256 or "").encode() for r in results],
        ),
        # Per image, as in /classify batches: one unusable image does not fail the others.
        Tensor(
            name="ERROR",
            datatype="BYTES",
            shape=[n],
            elements=[_error_text(r.error) for r in results],
        ),
    ]


def _error_text(error: ErrorBody | None) -> bytes:
    return b"" if error is None else f"{error.code}: {error.message}".encode()


def _grid(name: str, datatype: str, rows: list[list[Any]], value: Any, padding: Any) -> Tensor:
    """[N, longest row] of value(item), padded."""
    width = max((len(row) for row in rows), default=0)
    elements = [
        value(item) if item is not None else padding
        for row in rows
        for item in _pad(row, width, None)
    ]
    return Tensor(name=name, datatype=datatype, shape=[len(rows), width], elements=elements)


def _pad(row: list[Any], width: int, padding: Any) -> list[Any]:
    return [*row, *([padding] * (width - len(row)))]


def _number(
    options: dict[str, Any], name: str, kind: type, default: Any, bounds: tuple[float, float]
) -> Any:
    low, high = bounds
    if name not in options:
        return default
    value = options[name]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (kind is int and not isinstance(value, int))
        or not low <= value <= high
    ):
        raise ValidationFailed(
            f"Parameter {name!r} must be {kind.__name__} in [{low}, {high}]; got {value!r}.",
            parameter=name,
        )
    return kind(value)
