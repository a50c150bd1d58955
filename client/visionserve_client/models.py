"""Generated from the service's OpenAPI schema by scripts/client_models.py; do not edit."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, RootModel


class Version(RootModel[str]):
    root: Annotated[str, Field(min_length=1, title="Version")]


class AliasRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    name: Annotated[str, Field(pattern="^[a-z0-9][a-z0-9._-]{0,63}$", title="Name")]
    version: Annotated[Version | None, Field(title="Version")]


class AliasResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    default: Annotated[
        str, Field(description="name@version a bare name now means", title="Default")
    ]
    name: Annotated[str, Field(title="Name")]
    not_saved_reason: Annotated[
        str | None,
        Field(
            description="why the store could not keep it (read-only): it holds until restart",
            title="Not Saved Reason",
        ),
    ]
    pinned: Annotated[
        str | None,
        Field(description="the pinned version; null = the highest", title="Pinned"),
    ]
    saved_to: Annotated[str | None, Field(description="the aliases file written", title="Saved To")]


class Box(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    x_max: Annotated[float, Field(title="X Max")]
    x_min: Annotated[float, Field(title="X Min")]
    y_max: Annotated[float, Field(title="Y Max")]
    y_min: Annotated[float, Field(title="Y Min")]


class Comparison(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    chosen: Annotated[str, Field(title="Chosen")]
    margin: Annotated[float, Field(title="Margin")]
    ms_per_image: Annotated[dict[str, float], Field(title="Ms Per Image")]
    relative_cost: Annotated[dict[str, float], Field(title="Relative Cost")]
    rounds: Annotated[int, Field(title="Rounds")]


class DecisionRule(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    accept_probability: Annotated[
        float,
        Field(
            description="the card's, or the request's min_probability",
            title="Accept Probability",
        ),
    ]
    open_set_method: Annotated[str, Field(title="Open Set Method")]
    unknown_threshold: Annotated[float, Field(title="Unknown Threshold")]


class DeleteProductResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    deleted_references: Annotated[int, Field(title="Deleted References")]
    gallery: Annotated[str, Field(title="Gallery")]
    product_id: Annotated[str, Field(title="Product Id")]


class DetectedObjectPublic(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    box: Box
    class_id: Annotated[int, Field(title="Class Id")]
    label: Annotated[str, Field(title="Label")]
    score: Annotated[float, Field(title="Score")]


class DetectionSpec(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    box_coordinates: Annotated[
        Literal["input", "original"] | None, Field(title="Box Coordinates")
    ] = "input"
    box_format: Annotated[Literal["xyxy"], Field(title="Box Format")] = "xyxy"
    score_threshold: Annotated[float, Field(ge=0.0, le=1.0, title="Score Threshold")]


class DuplicatePublic(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    distance: Annotated[
        int,
        Field(description="differing bits of the 64-bit perceptual hash", title="Distance"),
    ]
    product_id: Annotated[str, Field(title="Product Id")]
    reference_id: Annotated[str, Field(title="Reference Id")]


class ErrorBody(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    code: Annotated[str, Field(title="Code")]
    details: Annotated[dict[str, Any] | None, Field(title="Details")] = None
    message: Annotated[str, Field(title="Message")]


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    error: ErrorBody


class Evaluation(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    dataset: Annotated[str, Field(title="Dataset")]
    per_class: Annotated[dict[str, dict[str, float]] | None, Field(title="Per Class")] = None
    source: Annotated[
        str,
        Field(
            description="who measured it: this project's training run, or upstream",
            title="Source",
        ),
    ]
    split: Annotated[str, Field(title="Split")]
    values: Annotated[dict[str, float], Field(title="Values")]


class Threshold(RootModel[float]):
    root: Annotated[
        float,
        Field(
            description="cosine similarity at or above which a match is `match`; default: the threshold chosen on held-out data for this model (its card)",
            ge=-1.0,
            le=1.0,
            title="Threshold",
        ),
    ]


class GalleryCreateRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    model: Annotated[
        str,
        Field(
            description="a served classifier whose card lists the embedding output",
            title="Model",
        ),
    ]
    threshold: Annotated[
        Threshold | None,
        Field(
            description="cosine similarity at or above which a match is `match`; default: the threshold chosen on held-out data for this model (its card)",
            title="Threshold",
        ),
    ] = None


class GalleryMatch(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    product_id: Annotated[str, Field(title="Product Id")]
    reference_id: Annotated[str, Field(title="Reference Id")]
    similarity: Annotated[float, Field(title="Similarity")]


class GalleryPublic(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    embedding_bytes: Annotated[
        int,
        Field(
            description="memory the references' embeddings take",
            title="Embedding Bytes",
        ),
    ]
    embedding_dim: Annotated[int, Field(title="Embedding Dim")]
    generation: Annotated[
        int,
        Field(description="grows with every change to the gallery", title="Generation"),
    ]
    model: Annotated[str, Field(title="Model")]
    model_sha256: Annotated[str, Field(title="Model Sha256")]
    name: Annotated[str, Field(title="Name")]
    product_count: Annotated[int, Field(title="Product Count")]
    reference_count: Annotated[int, Field(title="Reference Count")]
    threshold: Annotated[float, Field(title="Threshold")]
    threshold_source: Annotated[
        str,
        Field(
            description="where the default threshold came from",
            title="Threshold Source",
        ),
    ]


class HealthResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    status: Annotated[str, Field(title="Status")]


class HeatMap(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    data: Annotated[
        str,
        Field(description="base64 PNG, 0 = no evidence, 255 = the strongest", title="Data"),
    ]
    format: Annotated[Literal["png"], Field(title="Format")] = "png"


class CropSize(RootModel[int]):
    root: Annotated[int, Field(ge=1, title="Crop Size")]


class LiveResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    live: Annotated[bool, Field(title="Live")]


class MatchResult(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    decision: Annotated[Literal["match", "unknown"] | None, Field(title="Decision")] = None
    duplicate_of: DuplicatePublic | None = None
    error: ErrorBody | None = None
    filename: Annotated[str | None, Field(title="Filename")]
    heat_map: Annotated[
        HeatMap | None,
        Field(description="explain=true: each cell's share of the top similarity"),
    ] = None
    height: Annotated[int | None, Field(title="Height")] = None
    image_sha256: Annotated[str | None, Field(title="Image Sha256")] = None
    index: Annotated[int, Field(title="Index")]
    matches: Annotated[list[GalleryMatch] | None, Field(title="Matches")] = None
    width: Annotated[int | None, Field(title="Width")] = None


class EmbeddingDim(RootModel[int]):
    root: Annotated[int, Field(ge=1, title="Embedding Dim")]


class ModelChangePublic(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    folder: Annotated[str, Field(title="Folder")]
    model: Annotated[
        str | None,
        Field(description="name@version served from the folder now", title="Model"),
    ]
    previous_model: Annotated[
        str | None,
        Field(
            description="name@version it served before the reload",
            title="Previous Model",
        ),
    ]
    previous_sha256: Annotated[str | None, Field(title="Previous Sha256")]
    sha256: Annotated[str | None, Field(title="Sha256")]


class ModelRef(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    name: Annotated[str, Field(title="Name")]
    sha256: Annotated[str, Field(title="Sha256")]
    version: Annotated[str, Field(title="Version")]


class Normalization(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    mean: Annotated[list[float], Field(title="Mean")]
    std: Annotated[list[float], Field(title="Std")]


class K(RootModel[int]):
    root: Annotated[
        int,
        Field(description="knn: the neighbour whose distance counts", ge=1, title="K"),
    ]


class References(RootModel[int]):
    root: Annotated[int, Field(description="knn: stored embeddings", ge=1, title="References")]


class OpenSetSpec(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    auroc: Annotated[float | None, Field(title="Auroc")] = None
    compared: Annotated[
        dict[str, float] | None,
        Field(
            description="AUROC of every method tried on the unknown data",
            title="Compared",
        ),
    ] = None
    fpr_unknown: Annotated[float | None, Field(title="Fpr Unknown")] = None
    k: Annotated[
        K | None,
        Field(description="knn: the neighbour whose distance counts", title="K"),
    ] = None
    known_data: Annotated[str, Field(title="Known Data")]
    method: Annotated[Literal["msp", "energy", "knn"], Field(title="Method")]
    note: Annotated[str | None, Field(title="Note")] = ""
    references: Annotated[
        References | None,
        Field(description="knn: stored embeddings", title="References"),
    ] = None
    target_tpr: Annotated[float, Field(gt=0.0, le=1.0, title="Target Tpr")]
    threshold: Annotated[float, Field(title="Threshold")]
    tpr_known: Annotated[float, Field(title="Tpr Known")]
    unknown_data: Annotated[
        str | None,
        Field(description="None: chosen on known data only", title="Unknown Data"),
    ]


class ParityBounds(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    max_embedding_difference: Annotated[float, Field(title="Max Embedding Difference")]
    max_score_difference: Annotated[float, Field(title="Max Score Difference")]
    min_top1_agreement: Annotated[float | None, Field(title="Min Top1 Agreement")] = 0.98
    tie_margin: Annotated[float | None, Field(title="Tie Margin")] = 0.02


class PngMask(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    data: Annotated[
        str, Field(description="base64 of a single-channel (palette) PNG", title="Data")
    ]
    format: Annotated[Literal["png"], Field(title="Format")] = "png"


class PrecisionParity(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    bounds: ParityBounds
    images: Annotated[int, Field(title="Images")]
    max_embedding_difference: Annotated[float | None, Field(title="Max Embedding Difference")]
    max_score_difference: Annotated[float, Field(title="Max Score Difference")]
    top1_agreement: Annotated[float, Field(title="Top1 Agreement")]


class Prediction(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    class_id: Annotated[int, Field(title="Class Id")]
    label: Annotated[str, Field(title="Label")]
    score: Annotated[float, Field(title="Score")]


class ProductPublic(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    product_id: Annotated[str, Field(title="Product Id")]
    references: Annotated[int, Field(title="References")]


class QuantizationSpec(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    agreement: Annotated[
        float,
        Field(
            description="share with the fp32 model's top-1",
            ge=0.0,
            le=1.0,
            title="Agreement",
        ),
    ]
    backend: Annotated[str, Field(title="Backend")]
    calibration_data: Annotated[str, Field(title="Calibration Data")]
    calibration_images: Annotated[int, Field(ge=1, title="Calibration Images")]
    data: Annotated[str, Field(title="Data")]
    images: Annotated[int, Field(ge=1, title="Images")]
    max_loss: Annotated[
        float,
        Field(
            description="the bound on top1_fp32 - top1_int8, in points",
            title="Max Loss",
        ),
    ]
    reference_sha256: Annotated[
        str,
        Field(
            description="the fp32 archive",
            pattern="^[0-9a-f]{64}$",
            title="Reference Sha256",
        ),
    ]
    scheme: Annotated[str, Field(title="Scheme")]
    top1_fp32: Annotated[float, Field(title="Top1 Fp32")]
    top1_int8: Annotated[float, Field(title="Top1 Int8")]


class ReadyResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    ready: Annotated[bool, Field(title="Ready")]


class ReferenceResult(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    duplicate_of: DuplicatePublic | None = None
    error: ErrorBody | None = None
    filename: Annotated[str | None, Field(title="Filename")]
    height: Annotated[int | None, Field(title="Height")] = None
    image_sha256: Annotated[str | None, Field(title="Image Sha256")] = None
    index: Annotated[int, Field(title="Index")]
    reference_id: Annotated[str | None, Field(title="Reference Id")] = None
    width: Annotated[int | None, Field(title="Width")] = None


class RefusedModelDescription(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    folder: Annotated[str, Field(title="Folder")]
    reason: Annotated[str, Field(title="Reason")]
    still_serving: Annotated[
        str | None,
        Field(
            description="name@version the folder served before and still serves",
            title="Still Serving",
        ),
    ] = None


class ReloadResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    added: Annotated[list[ModelChangePublic], Field(title="Added")]
    defaults: Annotated[
        dict[str, str | None],
        Field(
            description="name -> name@version a bare name now means (null: pinned to a version that is not served)",
            title="Defaults",
        ),
    ]
    kept: Annotated[
        list[ModelChangePublic],
        Field(description="unchanged (same sha256), batcher kept", title="Kept"),
    ]
    refused: Annotated[list[RefusedModelDescription], Field(title="Refused")]
    removed: Annotated[list[ModelChangePublic], Field(title="Removed")]
    replaced: Annotated[list[ModelChangePublic], Field(title="Replaced")]


class RleClassMaskPublic(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    class_id: Annotated[int, Field(title="Class Id")]
    counts: Annotated[str, Field(title="Counts")]
    size: Annotated[
        tuple[int, int],
        Field(description="[height, width], as COCO orders it", title="Size"),
    ]


class RleMask(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    classes: Annotated[list[RleClassMaskPublic], Field(title="Classes")]
    format: Annotated[Literal["rle"], Field(title="Format")] = "rle"


class SegmentClass(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    class_id: Annotated[int, Field(title="Class Id")]
    fraction: Annotated[float, Field(description="pixels / (width x height)", title="Fraction")]
    label: Annotated[str, Field(title="Label")]
    pixels: Annotated[int, Field(title="Pixels")]


class SegmentationResult(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    classes: Annotated[
        list[SegmentClass] | None,
        Field(
            description="classes present, most pixels first; pixels add up to w x h",
            title="Classes",
        ),
    ] = None
    error: ErrorBody | None = None
    filename: Annotated[str | None, Field(title="Filename")]
    height: Annotated[int | None, Field(title="Height")] = None
    image_sha256: Annotated[
        str | None,
        Field(description="sha256 of the uploaded bytes", title="Image Sha256"),
    ] = None
    index: Annotated[int, Field(title="Index")]
    mask: Annotated[PngMask | RleMask | None, Field(title="Mask")] = None
    width: Annotated[int | None, Field(title="Width")] = None


class SegmentationSpec(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    background_class_id: Annotated[int | None, Field(ge=0, title="Background Class Id")] = 0
    mask_coordinates: Annotated[Literal["original"], Field(title="Mask Coordinates")] = "original"
    output: Annotated[Literal["logits"], Field(title="Output")] = "logits"


class ServerMetadataResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    extensions: Annotated[list[str], Field(title="Extensions")]
    name: Annotated[str, Field(title="Name")]
    version: Annotated[str, Field(title="Version")]


class SignatureDescription(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    key_id: Annotated[
        str | None,
        Field(description="sha256 of the public key, 16 hex", title="Key Id"),
    ] = None
    key_name: Annotated[str | None, Field(title="Key Name")] = None
    status: Annotated[
        Literal["verified", "not checked"],
        Field(
            description="not checked: the service has no trusted keys (VISION_TRUSTED_KEYS)",
            title="Status",
        ),
    ]


class SimilaritySpec(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    data: Annotated[str, Field(title="Data")]
    match_rate: Annotated[float, Field(title="Match Rate")]
    note: Annotated[str | None, Field(title="Note")] = ""
    references: Annotated[int, Field(ge=1, title="References")]
    threshold: Annotated[float, Field(ge=-1.0, le=1.0, title="Threshold")]
    top1: Annotated[float, Field(title="Top1")]
    unknown_rate: Annotated[float, Field(title="Unknown Rate")]


class TensorMetadata(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    datatype: Annotated[str, Field(title="Datatype")]
    name: Annotated[str, Field(title="Name")]
    shape: Annotated[list[int], Field(title="Shape")]


class Tuning(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    batch_size: Annotated[int, Field(title="Batch Size")]
    batch_trial: Comparison | None = None
    profile: Annotated[str | None, Field(title="Profile")] = None
    runtime: Annotated[Literal["as loaded", "oneDNN"], Field(title="Runtime")]
    runtime_reason: Annotated[str, Field(title="Runtime Reason")]
    runtime_trial: Comparison | None = None
    source: Annotated[Literal["measured", "profile", "settings"], Field(title="Source")]


class ValidationError(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    ctx: Annotated[dict[str, Any] | None, Field(title="Context")] = None
    input: Annotated[Any | None, Field(title="Input")] = None
    loc: Annotated[list[str | int], Field(title="Location")]
    msg: Annotated[str, Field(title="Message")]
    type: Annotated[str, Field(title="Error Type")]


class WatermarkSpec(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    classes: Annotated[
        int,
        Field(
            description="the classes the trigger labels were drawn from",
            ge=2,
            title="Classes",
        ),
    ]
    key_id: Annotated[str, Field(pattern="^[0-9a-f]{16}$", title="Key Id")]
    scheme: Annotated[Literal["adi-trigger-set-v1"], Field(title="Scheme")]
    trigger_accuracy_at_export: Annotated[
        float, Field(ge=0.0, le=1.0, title="Trigger Accuracy At Export")
    ]
    trigger_count: Annotated[int, Field(ge=1, title="Trigger Count")]


class AddReferencesResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    added: Annotated[int, Field(title="Added")]
    gallery: Annotated[str, Field(title="Gallery")]
    model: ModelRef
    product_id: Annotated[str, Field(title="Product Id")]
    references: Annotated[
        int,
        Field(
            description="the product's references after this request",
            title="References",
        ),
    ]
    results: Annotated[list[ReferenceResult], Field(title="Results")]


class CalibrationSpec(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    accept_probability: Annotated[float, Field(ge=0.0, le=1.0, title="Accept Probability")]
    accept_rule: Annotated[str, Field(title="Accept Rule")]
    data: Annotated[str, Field(description="the held-out data it was fitted on", title="Data")]
    ece_after: Annotated[float, Field(title="Ece After")]
    ece_before: Annotated[float, Field(title="Ece Before")]
    images: Annotated[int, Field(ge=1, title="Images")]
    open_set: OpenSetSpec
    temperature: Annotated[float, Field(gt=0.0, title="Temperature")]


class ClassificationResult(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    decision: Annotated[
        Literal["match", "unknown", "uncertain"] | None,
        Field(
            description="match: a known class at or above the accept probability; unknown: none of the model's classes (unknown_score above the card's threshold); uncertain: neither",
            title="Decision",
        ),
    ] = None
    error: ErrorBody | None = None
    filename: Annotated[str | None, Field(title="Filename")]
    heat_map: Annotated[
        HeatMap | None,
        Field(description="explain=true: the class activation map of the top class"),
    ] = None
    height: Annotated[int | None, Field(title="Height")] = None
    image_sha256: Annotated[
        str | None,
        Field(description="sha256 of the uploaded bytes", title="Image Sha256"),
    ] = None
    index: Annotated[int, Field(title="Index")]
    predictions: Annotated[list[Prediction] | None, Field(title="Predictions")] = None
    unknown_score: Annotated[
        float | None,
        Field(
            description="higher = less like anything the model was trained on",
            title="Unknown Score",
        ),
    ] = None
    width: Annotated[int | None, Field(title="Width")] = None


class ClassifyResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    calibrated: Annotated[
        bool,
        Field(
            description="scores are calibrated and results carry decisions",
            title="Calibrated",
        ),
    ]
    decision_rule: DecisionRule | None = None
    model: ModelRef
    results: Annotated[list[ClassificationResult], Field(title="Results")]


class DetectionResult(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    detections: Annotated[list[DetectedObjectPublic] | None, Field(title="Detections")] = None
    error: ErrorBody | None = None
    filename: Annotated[str | None, Field(title="Filename")]
    height: Annotated[int | None, Field(title="Height")] = None
    image_sha256: Annotated[
        str | None,
        Field(description="sha256 of the uploaded bytes", title="Image Sha256"),
    ] = None
    index: Annotated[int, Field(title="Index")]
    width: Annotated[int | None, Field(title="Width")] = None


class GalleriesResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    galleries: Annotated[list[GalleryPublic], Field(title="Galleries")]


class GalleryResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    embedding_bytes: Annotated[
        int,
        Field(
            description="memory the references' embeddings take",
            title="Embedding Bytes",
        ),
    ]
    embedding_dim: Annotated[int, Field(title="Embedding Dim")]
    generation: Annotated[
        int,
        Field(description="grows with every change to the gallery", title="Generation"),
    ]
    model: Annotated[str, Field(title="Model")]
    model_sha256: Annotated[str, Field(title="Model Sha256")]
    name: Annotated[str, Field(title="Name")]
    product_count: Annotated[int, Field(title="Product Count")]
    products: Annotated[list[ProductPublic], Field(title="Products")]
    reference_count: Annotated[int, Field(title="Reference Count")]
    threshold: Annotated[float, Field(title="Threshold")]
    threshold_source: Annotated[
        str,
        Field(
            description="where the default threshold came from",
            title="Threshold Source",
        ),
    ]


class HTTPValidationError(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    detail: Annotated[list[ValidationError] | None, Field(title="Detail")] = None


class InputSpec(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    color_mode: Annotated[Literal["RGB", "L"] | None, Field(title="Color Mode")] = "RGB"
    crop_size: Annotated[CropSize | None, Field(title="Crop Size")] = None
    dtype: Annotated[Literal["uint8"], Field(title="Dtype")] = "uint8"
    interpolation: Annotated[
        Literal["nearest", "bilinear", "bicubic"] | None, Field(title="Interpolation")
    ] = "bilinear"
    layout: Annotated[Literal["NCHW"], Field(title="Layout")] = "NCHW"
    normalization: Normalization | None = None
    resize_mode: Annotated[
        Literal["shorter_side", "stretch", "longer_side"] | None,
        Field(title="Resize Mode"),
    ] = "shorter_side"
    resize_size: Annotated[int, Field(ge=1, title="Resize Size")]


class MatchResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    gallery: Annotated[str, Field(title="Gallery")]
    model: ModelRef
    results: Annotated[list[MatchResult], Field(title="Results")]
    threshold: Annotated[
        float,
        Field(description="the gallery's, or the request's `threshold`", title="Threshold"),
    ]


class ModelCard(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    architecture: Annotated[str, Field(title="Architecture")]
    calibration: CalibrationSpec | None = None
    card_version: Annotated[Literal[1], Field(title="Card Version")] = 1
    created_at: Annotated[AwareDatetime | None, Field(title="Created At")] = None
    detection: DetectionSpec | None = None
    embedding_dim: Annotated[EmbeddingDim | None, Field(title="Embedding Dim")] = None
    framework: Annotated[dict[str, str], Field(title="Framework")]
    input: InputSpec
    labels: Annotated[list[str], Field(min_length=1, title="Labels")]
    metrics: Annotated[list[Evaluation] | None, Field(title="Metrics", validate_default=True)] = []
    name: Annotated[str, Field(pattern="^[a-z0-9][a-z0-9._-]{0,63}$", title="Name")]
    outputs: Annotated[
        list[Literal["logits", "embedding", "embedding_map", "class_map"]] | None,
        Field(title="Outputs"),
    ] = ["logits"]
    precision: Annotated[Literal["fp32", "int8"] | None, Field(title="Precision")] = "fp32"
    quantization: QuantizationSpec | None = None
    segmentation: SegmentationSpec | None = None
    similarity: SimilaritySpec | None = None
    task: Annotated[Literal["classify", "detect", "segment"], Field(title="Task")]
    training: Annotated[dict[str, Any] | None, Field(title="Training")] = None
    version: Annotated[str, Field(min_length=1, title="Version")]
    watermark: WatermarkSpec | None = None


class ModelMetadataResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    inputs: Annotated[list[TensorMetadata], Field(title="Inputs")]
    name: Annotated[str, Field(title="Name")]
    outputs: Annotated[list[TensorMetadata], Field(title="Outputs")]
    platform: Annotated[str, Field(title="Platform")]
    versions: Annotated[list[str], Field(title="Versions")]


class PrecisionChoice(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    parity: PrecisionParity | None = None
    reason: Annotated[str, Field(title="Reason")]
    requested: Annotated[Literal["fp32", "fp16", "bf16"], Field(title="Requested")]
    served: Annotated[Literal["fp32", "fp16", "bf16", "int8"], Field(title="Served")]


class SegmentResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    format: Annotated[Literal["png", "rle"], Field(title="Format")]
    model: ModelRef
    results: Annotated[list[SegmentationResult], Field(title="Results")]


class DetectResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    model: ModelRef
    results: Annotated[list[DetectionResult], Field(title="Results")]
    score_threshold: Annotated[float, Field(title="Score Threshold")]


class ModelDescription(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    calibrated: Annotated[
        bool,
        Field(
            description="false: scores are plain softmax and /classify gives no decisions",
            title="Calibrated",
        ),
    ]
    card: ModelCard
    default: Annotated[
        bool,
        Field(
            description="whether a bare name means this version (its alias)",
            title="Default",
        ),
    ]
    device: Annotated[str, Field(title="Device")]
    folder: Annotated[str, Field(description="the store folder it was loaded from", title="Folder")]
    max_batch_size: Annotated[int, Field(title="Max Batch Size")]
    model: Annotated[
        str,
        Field(
            description="name@version: this version, whatever the alias says",
            title="Model",
        ),
    ]
    precision: Annotated[
        PrecisionChoice,
        Field(
            description="the precision the forward runs in (VISION_CUDA_PRECISION on CUDA), why, and the parity with fp32 measured at load"
        ),
    ]
    sha256: Annotated[str, Field(title="Sha256")]
    signature: SignatureDescription
    tuning: Annotated[
        Tuning,
        Field(
            description="the runtime and batch size chosen at start-up, and the measurements behind"
        ),
    ]


class ModelsResponse(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
    )
    aliases: Annotated[
        dict[str, str],
        Field(
            description="name -> pinned version (models/aliases.json or POST /admin/models/alias); an unpinned name means its highest version",
            title="Aliases",
        ),
    ]
    default_classifier: Annotated[str, Field(title="Default Classifier")]
    default_detector: Annotated[str, Field(title="Default Detector")]
    default_segmenter: Annotated[str, Field(title="Default Segmenter")]
    device: Annotated[str, Field(title="Device")]
    models: Annotated[
        list[ModelDescription],
        Field(description="every version of every name", title="Models"),
    ]
    refused: Annotated[list[RefusedModelDescription], Field(title="Refused")]
    signatures_checked: Annotated[
        bool,
        Field(
            description="whether a model must be signed by a trusted key to be served",
            title="Signatures Checked",
        ),
    ]
