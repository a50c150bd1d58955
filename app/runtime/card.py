"""The model card: the one contract that training writes and serving reads (versioned)."""

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CARD_VERSION: Literal[1] = 1
CARD_FILENAME = "card.json"
MODEL_FILENAME = "model.pt"
# The open-set reference embeddings (kNN method), a tensor file inside the archive.
REFERENCE_FILENAME = "openset_references.pt"

Task = Literal["classify", "detect", "segment"]
Interpolation = Literal["nearest", "bilinear", "bicubic"]
# What a classifier's forward returns, in order: logits [N, C] alone (a plain tensor), or a
# tuple that adds the L2-normalised pooled penultimate features [N, D] ("embedding"), and then
# the activation maps behind them: "embedding_map" [N, D, h, w], the embedding spread over the
# last feature map's cells (its sum over h, w is the embedding), and "class_map" [N, h, w], the
# class activation map (CAM) of each image's top class (head weights x features, bias left out).
ClassifierOutput = Literal["logits", "embedding", "embedding_map", "class_map"]
CLASSIFIER_OUTPUTS: tuple[tuple[ClassifierOutput, ...], ...] = (
    ("logits",),
    ("logits", "embedding"),
    ("logits", "embedding", "embedding_map", "class_map"),
)
OpenSetMethod = Literal["msp", "energy", "knn"]
# The numeric precision of the archive's weights and activations (int8: static quantization).
Precision = Literal["fp32", "int8"]
# Masks are 8-bit PNGs of class ids.
MAX_SEGMENT_CLASSES = 256


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalization(_Strict):
    """Mean/std the scripted module applies itself; recorded for people, never reapplied."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


class InputSpec(_Strict):
    """What serving does to a decoded image before calling the model.

    The model takes a uint8 NCHW tensor in [0, 255]; casting and normalisation happen inside it.
    """

    color_mode: Literal["RGB", "L"] = "RGB"
    # shorter_side: scale so the shorter side equals resize_size; stretch: to a square;
    # longer_side (detectors): scale down so the longer side is at most resize_size, never up.
    resize_mode: Literal["shorter_side", "stretch", "longer_side"] = "shorter_side"
    resize_size: int = Field(ge=1)
    crop_size: int | None = Field(default=None, ge=1)
    interpolation: Interpolation = "bilinear"
    dtype: Literal["uint8"] = "uint8"
    layout: Literal["NCHW"] = "NCHW"
    normalization: Normalization | None = None

    @property
    def channels(self) -> int:
        """Number of colour channels the model takes."""
        return 3 if self.color_mode == "RGB" else 1

    @property
    def tensor_size(self) -> tuple[int, int]:
        """(height, width) of the tensor handed to the model, for square-cropped inputs."""
        side = self.crop_size or self.resize_size
        return side, side

    @model_validator(mode="after")
    def _crop_fits(self) -> "InputSpec":
        if self.crop_size is not None and self.crop_size > self.resize_size:
            raise ValueError("crop_size must not exceed resize_size")
        return self


class Evaluation(_Strict):
    """The evaluation a model was shipped with."""

    dataset: str
    split: str
    values: dict[str, float]
    source: str = Field(description="who measured it: this project's training run, or upstream")
    per_class: dict[str, dict[str, float]] | None = None


class DetectionSpec(_Strict):
    """Detector-only facts the service needs to interpret the output.

    A detector takes a list of uint8 CHW tensors (sizes may differ) and returns, per image, a
    dict with `boxes` (float [N, 4], xyxy), `scores` (float [N]) and `labels` (int64 [N],
    indices into the card's labels; index 0 is "__background__" and never returned).
    """

    score_threshold: float = Field(ge=0.0, le=1.0)
    box_format: Literal["xyxy"] = "xyxy"
    box_coordinates: Literal["input", "original"] = "input"


class SegmentationSpec(_Strict):
    """Segmenter-only facts the service needs to read the output.

    A segmenter takes a uint8 NCHW batch (the card's square input, the whole image stretched)
    and returns class logits [N, C, h, w] covering the whole input; h and w may be a stride of
    it. Serving scales them to each upload's upright size (bilinear) and takes the argmax, so
    a mask pixel's value is a class id, an index into the card's labels.
    """

    background_class_id: int = Field(default=0, ge=0)
    output: Literal["logits"] = "logits"
    mask_coordinates: Literal["original"] = "original"


class OpenSetSpec(_Strict):
    """How `unknown_score` is computed and where "none of my classes" begins.

    An image is `unknown` when its score is above `threshold`. The rates are measured on the
    data named here: `tpr_known` is the share of held-out known images not called unknown,
    `fpr_unknown` the share of unknown images not called unknown (lower is better).
    """

    method: OpenSetMethod
    threshold: float
    k: int | None = Field(
        default=None, ge=1, description="knn: the neighbour whose distance counts"
    )
    references: int | None = Field(default=None, ge=1, description="knn: stored embeddings")
    target_tpr: float = Field(gt=0.0, le=1.0)
    known_data: str
    unknown_data: str | None = Field(description="None: chosen on known data only")
    tpr_known: float
    fpr_unknown: float | None = None
    auroc: float | None = None
    compared: dict[str, float] = Field(
        default_factory=dict, description="AUROC of every method tried on the unknown data"
    )
    note: str = ""


class CalibrationSpec(_Strict):
    """Temperature scaling and the decision thresholds, fitted on held-out data."""

    temperature: float = Field(gt=0.0)
    data: str = Field(description="the held-out data it was fitted on")
    images: int = Field(ge=1)
    ece_before: float
    ece_after: float
    accept_probability: float = Field(ge=0.0, le=1.0)
    accept_rule: str
    open_set: OpenSetSpec


class SimilaritySpec(_Strict):
    """Where a reference-gallery match begins for this model's embedding, chosen on held-out data.

    A query is `match` when its best cosine similarity to a gallery reference is at or above
    `threshold`. Measured with `references` photos per product in the gallery: `top1` of held-out
    photos of gallery products, `match_rate` of those answered match, and `unknown_rate` of
    photos of products not in the gallery answered unknown.
    """

    threshold: float = Field(ge=-1.0, le=1.0)
    data: str
    references: int = Field(ge=1)
    top1: float
    match_rate: float
    unknown_rate: float
    note: str = ""


class QuantizationSpec(_Strict):
    """How an int8 archive was made from its fp32 model and what it cost, measured on real data.

    Weights are int8 per output channel, activations uint8 per tensor with ranges observed on
    `calibration_images` images of `calibration_data`. Accuracy is top-1 of the fp32 archive and
    of this one on the same held-out images (`data`); `max_loss` is the bound export enforced.
    """

    scheme: str
    backend: str
    calibration_data: str
    calibration_images: int = Field(ge=1)
    reference_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="the fp32 archive")
    data: str
    images: int = Field(ge=1)
    top1_fp32: float
    top1_int8: float
    agreement: float = Field(ge=0.0, le=1.0, description="share with the fp32 model's top-1")
    max_loss: float = Field(description="the bound on top1_fp32 - top1_int8, in points")


class WatermarkSpec(_Strict):
    """An ownership watermark was trained into this classifier (a key's trigger set).

    The key and the triggers are never in the card: `key_id` is a keyed hash that names the key
    without revealing it. The owner checks a copy with `python -m training watermark verify`.
    """

    scheme: Literal["adi-trigger-set-v1"]
    trigger_count: int = Field(ge=1)
    classes: int = Field(ge=2, description="the classes the trigger labels were drawn from")
    trigger_accuracy_at_export: float = Field(ge=0.0, le=1.0)
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")


class ModelCard(_Strict):
    """Self-description embedded in model.pt and written beside it as card.json."""

    card_version: Literal[1] = CARD_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    version: str = Field(min_length=1)
    task: Task
    architecture: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    framework: dict[str, str]
    labels: tuple[str, ...] = Field(min_length=1)
    input: InputSpec
    metrics: tuple[Evaluation, ...] = ()
    detection: DetectionSpec | None = None
    segmentation: SegmentationSpec | None = None
    training: dict[str, Any] | None = None
    outputs: tuple[ClassifierOutput, ...] = ("logits",)
    embedding_dim: int | None = Field(default=None, ge=1)
    calibration: CalibrationSpec | None = None
    similarity: SimilaritySpec | None = None
    precision: Precision = "fp32"
    quantization: QuantizationSpec | None = None
    # Optional and absent from older cards, so card_version stays 1.
    watermark: WatermarkSpec | None = None

    @model_validator(mode="after")
    def _task_fields_agree(self) -> "ModelCard":
        if (self.task == "detect") != (self.detection is not None):
            raise ValueError("`detection` is required for detectors and forbidden otherwise")
        if (self.task == "segment") != (self.segmentation is not None):
            raise ValueError("`segmentation` is required for segmenters and forbidden otherwise")
        self._check_outputs()
        if (self.precision == "int8") != (self.quantization is not None):
            raise ValueError("`quantization` is required for int8 models and forbidden otherwise")
        if self.segmentation is not None:
            self._check_segmenter(self.segmentation)
        fixed_size = self.input.crop_size is not None or self.input.resize_mode == "stretch"
        if self.task == "classify" and not fixed_size:
            raise ValueError("classifiers batch images, so `input` must give a fixed size")
        return self

    def _check_segmenter(self, spec: SegmentationSpec) -> None:
        # The whole upload must be seen (a mask covers every pixel), in one batchable shape.
        if self.input.resize_mode != "stretch" or self.input.crop_size is not None:
            raise ValueError("segmenters take the whole image stretched: resize_mode 'stretch'")
        if len(self.labels) > MAX_SEGMENT_CLASSES:
            raise ValueError(f"a mask PNG holds at most {MAX_SEGMENT_CLASSES} class ids")
        if spec.background_class_id >= len(self.labels):
            raise ValueError("`background_class_id` must index the labels")

    def _check_outputs(self) -> None:
        if self.outputs not in CLASSIFIER_OUTPUTS:
            raise ValueError(f"`outputs` must be one of {[list(o) for o in CLASSIFIER_OUTPUTS]}")
        if self.task != "classify" and (
            self.outputs != ("logits",) or self.calibration or self.watermark
        ):
            raise ValueError("`outputs`, `calibration` and `watermark` describe classifiers only")
        if self.embeds != (self.embedding_dim is not None):
            raise ValueError("`embedding_dim` is given exactly when `outputs` has 'embedding'")
        if self.watermark is not None and self.watermark.classes != len(self.labels):
            raise ValueError("`watermark.classes` must be the number of labels")
        if self.similarity is not None and not self.embeds:
            raise ValueError("`similarity` needs the embedding output")
        open_set = self.calibration.open_set if self.calibration else None
        if open_set and open_set.method == "knn" and not (self.embeds and open_set.references):
            raise ValueError("the knn open-set method needs the embedding output and references")

    @property
    def embeds(self) -> bool:
        """Whether the model returns an embedding next to its logits."""
        return "embedding" in self.outputs

    @property
    def explains(self) -> bool:
        """Whether the model returns its activation maps (explain=true)."""
        return "class_map" in self.outputs

    def to_json(self) -> str:
        """Canonical JSON, as embedded in the archive."""
        return self.model_dump_json(indent=2)


class ArchiveEncryption(_Strict):
    """How model.pt is encrypted at rest (app/runtime/encryption.py); never the key itself."""

    algorithm: Literal["aes-256-gcm"] = "aes-256-gcm"
    format_version: Literal[1] = 1
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    file: Literal["model.pt.enc"] = "model.pt.enc"


class StoredCard(ModelCard):
    """card.json beside model.pt: the card plus the archive's sha256 (of the plaintext
    archive) and, when the archive is stored encrypted, how."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    encryption: ArchiveEncryption | None = None

    def card(self) -> ModelCard:
        """The embedded card this file claims to describe."""
        return ModelCard.model_validate(self.model_dump(exclude={"sha256", "encryption"}))


def parse_card(text: str | bytes) -> ModelCard:
    """Parse and validate an embedded card."""
    return ModelCard.model_validate_json(text)


def parse_stored_card(text: str | bytes) -> StoredCard:
    """Parse and validate a card.json."""
    return StoredCard.model_validate_json(text)


def stored_card_json(
    card: ModelCard, sha256: str, encryption: ArchiveEncryption | None = None
) -> str:
    """The card.json text for an archive with this hash (encrypted at rest or not)."""
    payload = json.loads(card.to_json()) | {"sha256": sha256, "encryption": encryption}
    # A plain archive's card.json stays as it always was: no `"encryption": null` line.
    left_out = {"encryption"} if encryption is None else set()
    stored = StoredCard.model_validate(payload)
    return stored.model_dump_json(indent=2, exclude=left_out) + "\n"
