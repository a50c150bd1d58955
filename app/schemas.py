"""Response and error schemas: the HTTP contract (README "The API"), shared by api and services."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.runtime.card import ModelCard
from app.runtime.precision import PrecisionChoice
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


class HeatMap(BaseModel):
    """Where the model looked for its top answer: a grey PNG the size of the upright upload."""

    format: Literal["png"] = "png"
    data: str = Field(description="base64 PNG, 0 = no evidence, 255 = the strongest")


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
    heat_map: HeatMap | None = Field(
        default=None, description="explain=true: the class activation map of the top class"
    )
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

    model: str = Field(description="name@version: this version, whatever the alias says")
    default: bool = Field(description="whether a bare name means this version (its alias)")
    folder: str = Field(description="the store folder it was loaded from")
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
    precision: PrecisionChoice = Field(
        description="the precision the forward runs in (VISION_CUDA_PRECISION on CUDA), why, "
        "and the parity with fp32 measured at load"
    )


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
    still_serving: str | None = Field(
        default=None, description="name@version the folder served before and still serves"
    )


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
    aliases: dict[str, str] = Field(
        description="name -> pinned version (models/aliases.json or POST /admin/models/alias); "
        "an unpinned name means its highest version"
    )
    models: list[ModelDescription] = Field(description="every version of every name")


class HealthResponse(BaseModel):
    """Liveness and readiness answers."""

    status: str


class GalleryCreateRequest(BaseModel):
    """PUT /galleries/{gallery}: the embedding model, and optionally the match threshold."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="a served classifier whose card lists the embedding output")
    threshold: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="cosine similarity at or above which a match is `match`; default: the "
        "threshold chosen on held-out data for this model (its card)",
    )


class ProductPublic(BaseModel):
    """A product and its number of reference photos."""

    product_id: str
    references: int


class GalleryPublic(BaseModel):
    """A gallery: its model (bound by sha256), threshold and size."""

    name: str
    model: str
    model_sha256: str
    embedding_dim: int
    threshold: float
    threshold_source: str = Field(description="where the default threshold came from")
    product_count: int
    reference_count: int
    embedding_bytes: int = Field(description="memory the references' embeddings take")
    created_at: datetime
    generation: int = Field(description="grows with every change to the gallery")


class GalleryResponse(GalleryPublic):
    """GET/PUT /galleries/{gallery}: the gallery and its products."""

    products: list[ProductPublic]


class GalleriesResponse(BaseModel):
    """GET /galleries."""

    galleries: list[GalleryPublic]


class DuplicatePublic(BaseModel):
    """A stored reference that an upload nearly duplicates (perceptual hash distance)."""

    reference_id: str
    product_id: str
    distance: int = Field(description="differing bits of the 64-bit perceptual hash")


class ReferenceResult(BaseModel):
    """One uploaded reference photo: its new reference id, or that upload's error."""

    index: int
    filename: str | None
    image_sha256: str | None = None
    width: int | None = None
    height: int | None = None
    reference_id: str | None = None
    duplicate_of: DuplicatePublic | None = None
    error: ErrorBody | None = None


class AddReferencesResponse(BaseModel):
    """POST .../references: one result per upload; the usable ones were stored together."""

    gallery: str
    product_id: str
    model: ModelRef
    added: int
    references: int = Field(description="the product's references after this request")
    results: list[ReferenceResult]


class GalleryMatch(BaseModel):
    """A product and its most similar reference."""

    product_id: str
    reference_id: str
    similarity: float


class MatchResult(BaseModel):
    """The answer for one uploaded image: products best first and a decision, or its error."""

    index: int
    filename: str | None
    image_sha256: str | None = None
    width: int | None = None
    height: int | None = None
    decision: Literal["match", "unknown"] | None = None
    matches: list[GalleryMatch] | None = None
    duplicate_of: DuplicatePublic | None = None
    heat_map: HeatMap | None = Field(
        default=None, description="explain=true: each cell's share of the top similarity"
    )
    error: ErrorBody | None = None


class MatchResponse(BaseModel):
    """POST /galleries/{gallery}/match: one result per uploaded image, in upload order."""

    gallery: str
    model: ModelRef
    threshold: float = Field(description="the gallery's, or the request's `threshold`")
    results: list[MatchResult]


class DeleteProductResponse(BaseModel):
    """DELETE .../products/{product_id}."""

    gallery: str
    product_id: str
    deleted_references: int


# Admin: reloads and aliases (README "Operations: reload, versions, aliases, rollback").


class ModelChangePublic(BaseModel):
    """One store folder's outcome in a reload."""

    folder: str
    model: str | None = Field(description="name@version served from the folder now")
    sha256: str | None
    previous_model: str | None = Field(description="name@version it served before the reload")
    previous_sha256: str | None


class ReloadResponse(BaseModel):
    """What a reload changed, by store folder; refused folders keep their old version serving."""

    added: list[ModelChangePublic]
    replaced: list[ModelChangePublic]
    kept: list[ModelChangePublic] = Field(description="unchanged (same sha256), batcher kept")
    removed: list[ModelChangePublic]
    refused: list[RefusedModelDescription]
    defaults: dict[str, str | None] = Field(
        description="name -> name@version a bare name now means (null: pinned to a version "
        "that is not served)"
    )


class AliasRequest(BaseModel):
    """Point a name at one of its served versions (rollback), or back at the highest (null)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    version: str | None = Field(min_length=1)


class AliasResponse(BaseModel):
    """The alias in force, and whether it was saved in the store (to outlive a restart)."""

    name: str
    pinned: str | None = Field(description="the pinned version; null = the highest")
    default: str = Field(description="name@version a bare name now means")
    saved_to: str | None = Field(description="the aliases file written")
    not_saved_reason: str | None = Field(
        description="why the store could not keep it (read-only): it holds until restart"
    )
