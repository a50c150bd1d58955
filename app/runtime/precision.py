"""Half precision (fp16, bf16) for a loaded model, served only where it gives fp32's answers.

The shipped archives are frozen TorchScript: their weights are graph constants, not parameters,
and their first op casts the uint8 input to fp32 (normalisation lives inside the module), so
`module.half()` changes nothing and a cast input would be cast back. Half precision is therefore
applied around the forward pass with `torch.autocast`: convolutions and matrix products run in
the half type, precision-sensitive ops (softmax, reductions, torchvision's nms and roi_align)
stay in fp32, and the batch functions take the outputs back to fp32 before softmax,
calibration, searches and class maps. The archive, its sha256 and its signature are untouched,
so the card's `precision` keeps describing the archive (fp32 or int8, checked by the loader) and
the precision served is this module's record. Before a model is served in half precision, the
half and fp32 forwards run on the same seeded probe images; past the bounds below the model is
served in fp32 and the log and `GET /models` say why (like the oneDNN check in optimize.py).
"""

import dataclasses
import logging
from typing import Literal

import torch
from torch import nn

from app.runtime.card import ModelCard
from app.runtime.inference import forward_precision, split_outputs
from app.runtime.loader import LoadedModel
from app.runtime.openset import calibrated_probabilities

logger = logging.getLogger(__name__)

HalfPrecision = Literal["fp16", "bf16"]
RequestedPrecision = Literal["fp32", "fp16", "bf16"]
ServedPrecision = Literal["fp32", "fp16", "bf16", "int8"]

DTYPES: dict[HalfPrecision, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ParityBounds:
    """What a half-precision forward may differ from fp32's on the probe images.

    Scores are what the service answers with: a classifier's calibrated probabilities, a
    segmenter's class fractions. Top-1 agreement is per probe image (classifiers; a probe whose
    fp32 top-1 leads its runner-up by less than `tie_margin` counts as agreeing, a near-tie any
    rounding may flip) or per pixel (segmenters).
    """

    max_score_difference: float
    max_embedding_difference: float
    min_top1_agreement: float = 0.98
    tie_margin: float = 0.02


# fp16 keeps 11 significant bits, bf16 8. On the probes, CPU autocast moved the shipped
# MobileNetV2's scores by up to 0.086 (fp16) and 0.152 (bf16), top-1 agreeing on 8 of 8 and 6 of
# 8 (so bf16 is refused for it); on 8 real photos by up to 0.013 and 0.081, top-1 all agreeing.
# The score bounds catch a broken half forward (fp16 overflow, a wrong kernel), not rounding;
# top-1 agreement is the sharper test. Segmenter pixels: 99.05% (fp16), 98.21% (bf16) agree.
BOUNDS: dict[HalfPrecision, ParityBounds] = {
    "fp16": ParityBounds(max_score_difference=0.10, max_embedding_difference=0.05),
    "bf16": ParityBounds(max_score_difference=0.20, max_embedding_difference=0.10),
}
PROBE_IMAGES = 8
_PROBE_SEED = 20261201
_PARITY_TASKS = ("classify", "segment")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class PrecisionParity:
    """The half forward against fp32 on the probe images, and the bounds it was held to."""

    images: int
    # Share of probe images (of pixels, for segmenters) with fp32's top-1, near-ties agreeing.
    top1_agreement: float
    max_score_difference: float
    max_embedding_difference: float | None
    bounds: ParityBounds


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class PrecisionChoice:
    """The precision asked for, the one served, why, and the parity behind it."""

    requested: RequestedPrecision
    served: ServedPrecision
    reason: str
    parity: PrecisionParity | None = None


def precision_for_device(setting: RequestedPrecision, device: torch.device) -> RequestedPrecision:
    """`VISION_CUDA_PRECISION` on a CUDA device; fp32 elsewhere (a CPU serves through oneDNN)."""
    if device.type == "cuda" or setting == "fp32":
        return setting
    logger.warning("VISION_CUDA_PRECISION=%s applies on CUDA only; %s serves fp32", setting, device)
    return "fp32"


AS_EXPORTED = PrecisionChoice(requested="fp32", served="fp32", reason="as exported")


def choose_precision(
    loaded: LoadedModel, requested: RequestedPrecision
) -> tuple[LoadedModel, PrecisionChoice]:
    """The model in `requested` precision when it applies and passes parity, else as loaded."""
    served: ServedPrecision = loaded.card.precision
    if requested == "fp32":
        return loaded, PrecisionChoice(requested=requested, served=served, reason="as exported")
    problem = _not_applicable(loaded)
    if problem is not None:
        return loaded, _refused(loaded, requested, problem)
    half = dataclasses.replace(loaded, autocast_dtype=DTYPES[requested])
    try:
        parity = measure_parity(loaded, half, BOUNDS[requested])
    except Exception as error:  # an op without a half kernel must not stop serving
        return loaded, _refused(loaded, requested, f"the half forward failed: {error}")
    problem = _out_of_bounds(parity)
    if problem is not None:
        return loaded, _refused(loaded, requested, problem, parity)
    reason = f"autocast {requested}, parity within bounds on {parity.images} probe images"
    logger.info("%s: served in %s (%s)", loaded.card.name, requested, _describe(parity))
    return half, PrecisionChoice(
        requested=requested, served=requested, reason=reason, parity=parity
    )


def served_precision(model: LoadedModel) -> ServedPrecision:
    """The precision the model's forward runs in."""
    if model.autocast_dtype is None:
        return model.card.precision
    return _NAMES[model.autocast_dtype]


def measure_parity(
    reference: LoadedModel, half: LoadedModel, bounds: ParityBounds
) -> PrecisionParity:
    """Both forwards on the same seeded probe images, compared as the service uses the outputs."""
    probe = probe_images(reference.card).to(reference.device)
    with torch.inference_mode():
        expected = reference.module(probe)
        with forward_precision(half):
            actual = half.module(probe)
    if reference.card.task == "segment":
        return _segmenter_parity(expected, actual, bounds)
    return _classifier_parity(expected, actual, reference.card, bounds)


def probe_images(card: ModelCard, count: int = PROBE_IMAGES) -> torch.Tensor:
    """Seeded smooth noise (a coarse grid scaled up): blob-like structure, so activations look
    more like a photo's than white noise does, shaped as the card's fixed input."""
    generator = torch.Generator().manual_seed(_PROBE_SEED)
    height, width = card.input.tensor_size
    coarse = torch.rand(count, card.input.channels, 7, 7, generator=generator)
    smooth = nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")
    return (smooth * 255).round().to(torch.uint8)


def _not_applicable(loaded: LoadedModel) -> str | None:
    if loaded.card.task not in _PARITY_TASKS:
        # Their outputs on seeded probes are mostly empty: no parity could be measured.
        return "half precision is parity-checked for classifiers and segmenters only"
    if loaded.card.precision != "fp32":
        return f"the archive is {loaded.card.precision}; half precision casts fp32 models"
    return None


def _classifier_parity(
    expected: object, actual: object, card: ModelCard, bounds: ParityBounds
) -> PrecisionParity:
    count = PROBE_IMAGES
    want_logits, want_embeddings = split_outputs(expected, card, count)
    got_logits, got_embeddings = split_outputs(actual, card, count)
    temperature = card.calibration.temperature if card.calibration else 1.0
    want = calibrated_probabilities(want_logits.float(), temperature)
    got = calibrated_probabilities(got_logits.float(), temperature)
    agree = want.argmax(dim=1) == got.argmax(dim=1)
    top2 = want.topk(min(2, want.shape[1]), dim=1).values
    near_tie = (top2[:, 0] - top2[:, -1]) < bounds.tie_margin
    embedding_gap = None
    if want_embeddings is not None and got_embeddings is not None:
        embedding_gap = _max_gap(want_embeddings, got_embeddings)
    return PrecisionParity(
        images=count,
        top1_agreement=float((agree | near_tie).float().mean().item()),
        max_score_difference=_max_gap(want, got),
        max_embedding_difference=embedding_gap,
        bounds=bounds,
    )


def _segmenter_parity(expected: object, actual: object, bounds: ParityBounds) -> PrecisionParity:
    if not isinstance(expected, torch.Tensor) or not isinstance(actual, torch.Tensor):
        raise RuntimeError("a segmenter returned something other than a logits tensor")
    if actual.shape != expected.shape:
        raise RuntimeError(f"logits {tuple(actual.shape)}, not {tuple(expected.shape)}")
    want, got = expected.float().argmax(dim=1), actual.float().argmax(dim=1)
    agree = (want == got).float().mean().item()
    return PrecisionParity(
        images=PROBE_IMAGES,
        top1_agreement=float(agree),
        max_score_difference=_max_gap(_fractions(want, expected), _fractions(got, expected)),
        max_embedding_difference=None,
        bounds=bounds,
    )


def _fractions(classes: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """[N, C]: each image's share of pixels per class, as /segment reports it."""
    one_hot = nn.functional.one_hot(classes, logits.shape[1]).float()
    return one_hot.mean(dim=(1, 2))


def _out_of_bounds(parity: PrecisionParity) -> str | None:
    bounds = parity.bounds
    if parity.max_score_difference > bounds.max_score_difference:
        return (
            f"scores differ by up to {parity.max_score_difference:.4f} "
            f"(bound {bounds.max_score_difference})"
        )
    embedding_gap = parity.max_embedding_difference
    if embedding_gap is not None and embedding_gap > bounds.max_embedding_difference:
        bound = bounds.max_embedding_difference
        return f"embeddings differ by up to {embedding_gap:.4f} (bound {bound})"
    if parity.top1_agreement < bounds.min_top1_agreement:
        return (
            f"top-1 agrees on {parity.top1_agreement:.2%} of probes "
            f"(bound {bounds.min_top1_agreement:.0%})"
        )
    return None


def _refused(
    loaded: LoadedModel,
    requested: RequestedPrecision,
    problem: str,
    parity: PrecisionParity | None = None,
) -> PrecisionChoice:
    logger.warning("%s: served in fp32, not %s (%s)", loaded.card.name, requested, problem)
    return PrecisionChoice(
        requested=requested,
        served=loaded.card.precision,
        reason=f"not {requested}: {problem}",
        parity=parity,
    )


def _max_gap(expected: torch.Tensor, actual: torch.Tensor) -> float:
    if expected.numel() == 0:
        return 0.0
    return float((expected.float() - actual.float()).abs().max().item())


def _describe(parity: PrecisionParity) -> str:
    return (
        f"top-1 agreement {parity.top1_agreement:.2%}, "
        f"max score difference {parity.max_score_difference:.4f}"
    )
