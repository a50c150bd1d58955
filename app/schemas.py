"""Response and error schemas: the HTTP contract of DESIGN.md, shared by api and services."""

from typing import Any

from pydantic import BaseModel, Field

from app.runtime.card import ModelCard


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
    """One class and its probability."""

    label: str
    class_id: int
    score: float


class ClassificationResult(BaseModel):
    """The answer for one uploaded image: predictions, or the error that image got."""

    index: int
    filename: str | None
    width: int | None = None
    height: int | None = None
    predictions: list[Prediction] | None = None
    error: ErrorBody | None = None


class ClassifyResponse(BaseModel):
    """One result per uploaded image, in upload order."""

    model: ModelRef
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
    width: int | None = None
    height: int | None = None
    detections: list[DetectedObjectPublic] | None = None
    error: ErrorBody | None = None


class DetectResponse(BaseModel):
    """One result per uploaded image, in upload order."""

    model: ModelRef
    score_threshold: float
    results: list[DetectionResult]


class ModelDescription(BaseModel):
    """A served model: its card, archive hash and where it runs."""

    card: ModelCard
    sha256: str
    device: str
    max_batch_size: int


class ModelsResponse(BaseModel):
    """Every served model."""

    device: str
    default_classifier: str
    default_detector: str
    models: list[ModelDescription]


class HealthResponse(BaseModel):
    """Liveness and readiness answers."""

    status: str
