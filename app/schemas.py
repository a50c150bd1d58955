"""Response and error schemas: the HTTP contract (README "The API"), shared by api and services."""

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.runtime.card import ModelCard
from app.runtime.tuning import Tuning


class ErrorBody(BaseModel):
    """What went wrong, machine-readable (`code`) and human-readable (`message`)."""

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    """The one error shape every failing request gets."""

    error: ErrorBody


class ModelRef(BaseModel):
    """Which exact model answered."""

    name: str
    version: str
    sha256: str


class Prediction(BaseModel):
    """One class and its probability (calibrated when the model's card carries calibration)."""

    label: str
    class_id: int
    score: float


class ClassificationResult(BaseModel):
    """The answer for one uploaded image: predictions, or the error that image got.

    Models with calibration add `decision` and `unknown_score`; see `ClassifyResponse.decisions`.
    """

    index: int
    filename: str | None
    image_sha256: str | None = Field(default=None, description="sha256 of the uploaded bytes")
    width: int | None = None
    height: int | None = None
    decision: Literal["match", "unknown", "uncertain"] | None = Field(
        default=None,
        description="match: a known class at or above the accept probability; unknown: none "
        "of the model's classes (unknown_score above the card's threshold); uncertain: neither",
    )
    unknown_score: float | None = Field(
        default=None, description="higher = less like anything the model was trained on"
    )
    predictions: list[Prediction] | None = None
    error: ErrorBody | None = None


class DecisionRule(BaseModel):
    """The thresholds this response's decisions used."""

    accept_probability: float = Field(description="the card's, or the request's min_probability")
    unknown_threshold: float
    open_set_method: str


class ClassifyResponse(BaseModel):
    """One result per uploaded image, in upload order."""

    model: ModelRef
    calibrated: bool = Field(description="scores are calibrated and results carry decisions")
    decision_rule: DecisionRule | None = None
    results: list[ClassificationResult]


class Box(BaseModel):
    """Pixel coordinates in the original upload, after EXIF orientation."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float


class DetectedObjectPublic(BaseModel):
    """One detected object."""

    label: str
    class_id: int
    score: float
    box: Box


class DetectionResult(BaseModel):
    """The answer for one uploaded image: detections (best first), or that image's error."""

    index: int
    filename: str | None
    image_sha256: str | None = Field(default=None, description="sha256 of the uploaded bytes")
    width: int | None = None
    height: int | None = None
    detections: list[DetectedObjectPublic] | None = None
    error: ErrorBody | None = None


class DetectResponse(BaseModel):
    """One result per uploaded image, in upload order."""

    model: ModelRef
    score_threshold: float
    results: list[DetectionResult]


class SegmentClass(BaseModel):
    """One class present in an image's mask (background included)."""

    label: str
    class_id: int
    pixels: int
    fraction: float = Field(description="pixels / (width x height)")


class PngMask(BaseModel):
    """The whole mask as one indexed PNG the size of the upright upload; values are class ids."""

    format: Literal["png"] = "png"
    data: str = Field(description="base64 of a single-channel (palette) PNG")


class RleClassMaskPublic(BaseModel):
    """One class's pixels as COCO compressed RLE (pycocotools' `mask.decode` reads it)."""

    class_id: int
    size: tuple[int, int] = Field(description="[height, width], as COCO orders it")
    counts: str


class RleMask(BaseModel):
    """The mask as COCO RLE, one entry per class present."""

    format: Literal["rle"] = "rle"
    classes: list[RleClassMaskPublic]


class SegmentationResult(BaseModel):
    """The answer for one uploaded image: classes and mask, or that image's error."""

    index: int
    filename: str | None
    image_sha256: str | None = Field(default=None, description="sha256 of the uploaded bytes")
    width: int | None = None
    height: int | None = None
    classes: list[SegmentClass] | None = Field(
        default=None, description="classes present, most pixels first; pixels add up to w x h"
    )
    mask: PngMask | RleMask | None = Field(default=None, discriminator="format")
    error: ErrorBody | None = None


class SegmentResponse(BaseModel):
    """One result per uploaded image, in upload order."""

    model: ModelRef
    format: Literal["png", "rle"]
    results: list[SegmentationResult]


class ModelDescription(BaseModel):
    """A served model: its card, archive hash and where it runs."""

    card: ModelCard
    sha256: str
    device: str
    max_batch_size: int
    calibrated: bool = Field(
        description="false: scores are plain softmax and /classify gives no decisions"
    )
    tuning: Tuning = Field(
        description="the runtime and batch size chosen at start-up, and the measurements behind"
    )
    signature: "SignatureDescription"


class SignatureDescription(BaseModel):
    """How the model's signature was checked when it was loaded."""

    status: Literal["verified", "not checked"] = Field(
        description="not checked: the service has no trusted keys (VISION_TRUSTED_KEYS)"
    )
    key_name: str | None = None
    key_id: str | None = Field(default=None, description="sha256 of the public key, 16 hex")


class RefusedModelDescription(BaseModel):
    """A model folder in the store that is not served, and why (unsigned, altered, ...)."""

    folder: str
    reason: str


class ModelsResponse(BaseModel):
    """Every served model, and the store's folders that were refused."""

    device: str
    default_classifier: str
    default_detector: str
    default_segmenter: str
    signatures_checked: bool = Field(
        description="whether a model must be signed by a trusted key to be served"
    )
    refused: list[RefusedModelDescription]
    models: list[ModelDescription]


class HealthResponse(BaseModel):
    """Liveness and readiness answers."""

    status: str
