"""CPU inference optimisation of a loaded classifier, applied only where it is proven.

`torch.jit.optimize_for_inference` folds batch norm into the convolutions and runs them on oneDNN
with prepacked weights. On the 2-core CPU we develop on it makes MobileNetV2 2.5-3x faster per
image (batch 1: 14.4 -> 5.8 ms, single thread) with logits equal to 2e-5. The archive on disk and
its hash are untouched; only the in-memory module changes. It is checked on this very model at
start-up: the optimised module must give the original's logits and top-1 on a probe batch, and
be clearly faster on it (interleaved rounds, `tuning.RUNTIME_MARGIN`), or the original is served
and the log says why. The gain depends on the
architecture (batch 2, one thread: MobileNetV2 2.5x, ResNet-18 and RegNetY-400MF 1.3x,
EfficientNet-B0 1.1x, ConvNeXt-T and MobileNetV3-S none), hence the measurement. Segmenters are
checked the same way on their logits and per-pixel classes. Detectors and CUDA keep the module as
loaded (the pass targets CPU convolutions, and a detector's outputs cannot be compared on a
random probe).
"""

import dataclasses
import io
import logging
import warnings
from collections.abc import Callable

import torch

from app.runtime.card import ModelCard
from app.runtime.inference import split_outputs
from app.runtime.loader import LoadedModel
from app.runtime.tuning import (
    RUNTIME_MARGIN,
    Comparison,
    Runtime,
    TrialPlan,
    compare,
    describe,
)

logger = logging.getLogger(__name__)

Forward = Callable[[torch.jit.ScriptModule, torch.Tensor], object]

_PROBE_BATCH = 2
_WARM_UP_CALLS = 2  # TorchScript profiles and specialises a graph on its first calls
# oneDNN reorders sums; logits of the shipped models differ by ~1e-5 (see the module docstring).
_RELATIVE_TOLERANCE = 1e-3
# Random probe images leave some pixels with two near-equal class logits: a reordered sum may
# flip those, and only those.
_MAX_FLIPPED_PIXELS = 1e-3
_OPTIMIZED_TASKS = ("classify", "segment")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RuntimeChoice:
    """The module to serve, which one it is, why, and the timing behind the choice."""

    model: LoadedModel
    runtime: Runtime
    reason: str
    trial: Comparison | None = None


def optimize_for_cpu(loaded: LoadedModel, plan: TrialPlan | None = None) -> LoadedModel:
    """The same model with a faster module where the pass applies, agrees and is faster."""
    return choose_runtime(loaded, plan or TrialPlan()).model


def run_forward(module: torch.jit.ScriptModule, images: torch.Tensor) -> object:
    """One forward pass (tests replace it to run on a simulated clock)."""
    return module(images)


def choose_runtime(
    loaded: LoadedModel, plan: TrialPlan, forward: Forward = run_forward
) -> RuntimeChoice:
    """oneDNN when it gives the loaded model's answers and is clearly faster, else as loaded."""
    optimized = optimized_model(loaded)
    if isinstance(optimized, str):
        return RuntimeChoice(model=loaded, runtime="as loaded", reason=optimized)
    probe = _probe_batch(loaded)
    modules = {"as loaded": loaded.module, "oneDNN": optimized.module}
    with torch.inference_mode():
        for module in modules.values():
            for _ in range(_WARM_UP_CALLS):
                forward(module, probe)
        trial = compare(
            {name: _call(forward, module, probe) for name, module in modules.items()},
            dict.fromkeys(modules, _PROBE_BATCH),
            RUNTIME_MARGIN,
            plan,
        )
    if trial.chosen == "as loaded":
        reason = f"oneDNN not clearly faster ({describe(trial)})"
        return RuntimeChoice(model=loaded, runtime="as loaded", reason=reason, trial=trial)
    reason = f"oneDNN, batch norm folded ({describe(trial)})"
    return RuntimeChoice(model=optimized, runtime="oneDNN", reason=reason, trial=trial)


def optimized_model(loaded: LoadedModel) -> LoadedModel | str:
    """The model with its module optimised and checked against the original, or why not."""
    if loaded.device.type != "cpu" or loaded.card.task not in _OPTIMIZED_TASKS:
        return "oneDNN applies to classifiers and segmenters on CPU only"
    if loaded.card.precision == "int8":
        # The pass targets fp32 convolutions; int8 ones already run on fbgemm's kernels.
        return "oneDNN applies to fp32 models; int8 runs its quantized kernels"
    probe = _probe_batch(loaded)
    try:
        with warnings.catch_warnings():
            # TorchScript is our format (docs/architecture.md); its deprecation notice is known.
            warnings.simplefilter("ignore", FutureWarning)
            optimized = torch.jit.optimize_for_inference(_independent_copy(loaded.module))
        problem = _disagreement(loaded.module, optimized, probe, loaded.card)
    except Exception as error:  # a pass that cannot handle this model must not stop serving
        problem = f"the pass failed: {error}"
    if problem:
        logger.warning("%s: served as loaded, not optimised (%s)", loaded.card.name, problem)
        return f"not optimised: {problem}"
    return dataclasses.replace(loaded, module=optimized)


def _call(
    forward: Forward, module: torch.jit.ScriptModule, probe: torch.Tensor
) -> Callable[[], object]:
    return lambda: forward(module, probe)


def _independent_copy(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """A copy with its own graphs.

    The pass rewrites graphs in place and deepcopy shares them, so optimising a deepcopy would
    also change the module we fall back to (and compare against).
    """
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    buffer.seek(0)
    copy: torch.jit.ScriptModule = torch.jit.load(  # type: ignore[no-untyped-call]
        buffer, map_location="cpu"
    )
    return copy


def _probe_batch(loaded: LoadedModel) -> torch.Tensor:
    spec = loaded.card.input
    height, width = spec.tensor_size
    generator = torch.Generator().manual_seed(0)
    shape = (_PROBE_BATCH, spec.channels, height, width)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def _disagreement(
    original: torch.jit.ScriptModule,
    optimized: torch.jit.ScriptModule,
    probe: torch.Tensor,
    card: ModelCard,
) -> str | None:
    """Why the optimised module cannot stand in for the original, or None when it can."""
    if card.task == "segment":
        return _segmenter_disagreement(original, optimized, probe)
    with torch.inference_mode():
        expected = split_outputs(original(probe), card, len(probe))
        try:
            actual = split_outputs(optimized(probe), card, len(probe))
        except RuntimeError as error:
            return f"wrong outputs: {error}"
    for name, want, got in zip(("logits", "embeddings"), expected, actual, strict=True):
        if want is None or got is None:
            continue
        gap = (got.float() - want.float()).abs().max().item()
        if gap > _RELATIVE_TOLERANCE * max(1.0, want.float().abs().max().item()):
            return f"{name} differ by {gap:.2e}"
    if not torch.equal(actual[0].argmax(dim=1), expected[0].argmax(dim=1)):
        return "top-1 classes differ"
    return None


def _segmenter_disagreement(
    original: torch.jit.ScriptModule, optimized: torch.jit.ScriptModule, probe: torch.Tensor
) -> str | None:
    with torch.inference_mode():
        expected = original(probe).float()
        try:
            actual = optimized(probe).float()
        except RuntimeError as error:
            return f"wrong outputs: {error}"
    if actual.shape != expected.shape:
        return f"logits shape {tuple(actual.shape)}, not {tuple(expected.shape)}"
    gap = (actual - expected).abs().max().item()
    if gap > _RELATIVE_TOLERANCE * max(1.0, expected.abs().max().item()):
        return f"logits differ by {gap:.2e}"
    flipped = (actual.argmax(dim=1) != expected.argmax(dim=1)).float().mean().item()
    if flipped > _MAX_FLIPPED_PIXELS:
        return f"{flipped:.2%} of pixels change class"
    return None
