"""Start-up tuning of one model: its runtime and batch size, from its profile or measured.

Either way the model leaves warmed up at every batch size it may be given.
"""

import dataclasses
import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from app.memory import allocator_plan
from app.runtime.card import ModelCard
from app.runtime.detection import detect_warm_up_batch, make_detect_runner
from app.runtime.inference import classify_warm_up_batch, make_classify_runner
from app.runtime.loader import LoadedModel
from app.runtime.optimize import RuntimeChoice, choose_runtime, optimized_model
from app.runtime.precision import served_precision
from app.runtime.profile import ProfileKey, cpu_model, profile_path, read_profile, write_profile
from app.runtime.segmentation import make_segment_runner, segment_warm_up_batch
from app.runtime.store import served_ref
from app.runtime.tuning import (
    BATCH_MARGIN,
    Comparison,
    TrialPlan,
    Tuning,
    candidate_sizes,
    compare,
    describe,
)

logger = logging.getLogger(__name__)

BatchRunner = Callable[[list[Any]], Sequence[Any]]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TuningPolicy:
    """What to decide at start-up, under which thread plan, and where to keep the decisions."""

    optimize_cpu: bool
    autotune_batch_size: bool
    max_batch_size: int
    inference_threads: int
    torch_threads: int
    profile_dir: Path
    remeasure: bool = False  # ignore a matching profile (python -m app tune)
    plan: TrialPlan = dataclasses.field(default_factory=TrialPlan)

    @property
    def decides(self) -> bool:
        """Whether anything is measured (else the settings are served as they are)."""
        return self.optimize_cpu or self.autotune_batch_size


def runner_for(loaded: LoadedModel) -> BatchRunner:
    """The batch function the batcher's workers call for this model."""
    if loaded.card.task == "detect":
        return make_detect_runner(loaded)
    if loaded.card.task == "segment":
        return make_segment_runner(loaded)
    return make_classify_runner(loaded)


def warm_up_batch(card: ModelCard, size: int) -> list[Any]:
    """`size` blank inputs shaped as the model takes them."""
    spec = card.input
    if card.task == "detect":
        return detect_warm_up_batch(spec.channels, spec.resize_size, size)
    if card.task == "segment":
        return segment_warm_up_batch(spec.channels, spec.resize_size, size)
    height, width = spec.tensor_size
    return classify_warm_up_batch(spec.channels, height, width, size)


def tune_model(loaded: LoadedModel, policy: TuningPolicy) -> tuple[LoadedModel, Tuning]:
    """The model to serve and its tuning: the profile's when it matches, else measured now."""
    key = profile_key(loaded, policy)
    stored = None
    if policy.decides and not policy.remeasure:
        stored = read_profile(policy.profile_dir, profile_name(loaded.card), key)
    if stored is not None:
        model, tuning = _apply_profile(loaded, stored, policy)
    else:
        model, tuning = _measure(loaded, policy)
        if policy.decides:
            path = write_profile(policy.profile_dir, profile_name(loaded.card), key, tuning)
            tuning = dataclasses.replace(tuning, profile=str(path) if path else None)
    _log(loaded.card.name, tuning)
    return model, tuning


def profile_name(card: ModelCard) -> str:
    """A profile per version (`name@version`): versions served side by side keep their own."""
    return served_ref(card)


def profile_key(loaded: LoadedModel, policy: TuningPolicy) -> ProfileKey:
    """The key a profile of this model must carry to be used under `policy`."""
    return ProfileKey(
        model_sha256=loaded.sha256,
        cpu=cpu_model(),
        torch_version=torch.__version__,
        device=str(loaded.device),
        inference_threads=policy.inference_threads,
        torch_threads=policy.torch_threads,
        max_batch_size=policy.max_batch_size,
        optimize_cpu=policy.optimize_cpu,
        autotune_batch_size=policy.autotune_batch_size,
        allocator=allocator_plan(),
        precision=served_precision(loaded),
    )


def _apply_profile(
    loaded: LoadedModel, stored: Tuning, policy: TuningPolicy
) -> tuple[LoadedModel, Tuning]:
    path = str(profile_path(policy.profile_dir, profile_name(loaded.card)))
    tuning = dataclasses.replace(stored, source="profile", profile=path)
    model = loaded
    if stored.runtime == "oneDNN":
        optimized = optimized_model(loaded)  # the parity check runs at every start
        if isinstance(optimized, str):
            tuning = dataclasses.replace(tuning, runtime="as loaded", runtime_reason=optimized)
        else:
            model = optimized
    _warm_up(runner_for(model), model.card, candidate_sizes(tuning.batch_size))
    return model, tuning


def _measure(loaded: LoadedModel, policy: TuningPolicy) -> tuple[LoadedModel, Tuning]:
    if policy.optimize_cpu:
        choice = choose_runtime(loaded, policy.plan)
    else:
        choice = RuntimeChoice(model=loaded, runtime="as loaded", reason="OPTIMIZE_CPU is off")
    batch_size, batch_trial = _choose_batch_size(choice.model, policy)
    tuning = Tuning(
        runtime=choice.runtime,
        runtime_reason=choice.reason,
        batch_size=batch_size,
        source="measured" if policy.decides else "settings",
        runtime_trial=choice.trial,
        batch_trial=batch_trial,
    )
    return choice.model, tuning


def _choose_batch_size(model: LoadedModel, policy: TuningPolicy) -> tuple[int, Comparison | None]:
    run = runner_for(model)
    sizes = candidate_sizes(policy.max_batch_size)
    batches = _warm_up(run, model.card, sizes)
    if not policy.autotune_batch_size:
        return policy.max_batch_size, None
    trial = compare(
        {str(size): partial(run, batch) for size, batch in batches.items()},
        {str(size): size for size in sizes},
        BATCH_MARGIN,
        policy.plan,
    )
    return int(trial.chosen), trial


def _warm_up(run: BatchRunner, card: ModelCard, sizes: list[int]) -> dict[int, list[Any]]:
    """Run every size twice: the first calls of a shape compile and specialise its graph."""
    batches = {size: warm_up_batch(card, size) for size in sizes}
    for batch in batches.values():
        run(batch)
        run(batch)
    return batches


def _log(name: str, tuning: Tuning) -> None:
    batch = f"batch size {tuning.batch_size}"
    if tuning.batch_trial is not None:
        batch += f" ({describe(tuning.batch_trial)})"
    where = f"; profile {tuning.profile}" if tuning.profile else ""
    logger.info(
        "%s: %s: runtime %s (%s), %s%s",
        name,
        tuning.source,
        tuning.runtime,
        tuning.runtime_reason,
        batch,
        where,
    )
