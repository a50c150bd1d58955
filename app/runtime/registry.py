"""The model store in memory: every served model with its batcher, looked up by name."""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.errors import ModelLoadError, ModelNotFound, WrongTask
from app.runtime.batching import BatchPolicy, DynamicBatcher
from app.runtime.card import ModelCard, Task
from app.runtime.detection import detect_warm_up_batch, make_detect_runner
from app.runtime.inference import classify_warm_up_batch, make_classify_runner
from app.runtime.loader import LoadedModel, discover_model_dirs, load_model
from app.runtime.optimize import optimize_for_cpu
from app.runtime.tuning import best_batch_size, candidate_sizes, measure_batch_rates

logger = logging.getLogger(__name__)

BatchObserver = Callable[[str, int, float], None]


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A loaded model and the batcher that feeds it."""

    loaded: LoadedModel
    # Items and outputs depend on the task: ClassifyInput -> ClassifiedImage, or
    # DetectInput -> list[DetectedObject]; the task's service knows which.
    batcher: DynamicBatcher[Any, Any]

    @property
    def card(self) -> ModelCard:
        """The model's card."""
        return self.loaded.card

    @property
    def name(self) -> str:
        """The model's name in the store."""
        return self.loaded.card.name


class ModelRegistry:
    """Loads every model in the store once, warms each up, and hands them out by name."""

    def __init__(self, models: dict[str, ServedModel], device: torch.device) -> None:
        self._models = models
        self.device = device
        self.ready = False

    @classmethod
    def from_store(
        cls,
        model_dir: Path,
        device: torch.device,
        policy: BatchPolicy,
        observe_batch: BatchObserver | None = None,
        optimize_cpu: bool = False,
    ) -> "ModelRegistry":
        """Load and verify every model folder under `model_dir` (optimised for CPU if asked)."""
        models: dict[str, ServedModel] = {}
        for directory in discover_model_dirs(model_dir):
            loaded = load_model(directory, device)
            if optimize_cpu:
                loaded = optimize_for_cpu(loaded)
            models[loaded.card.name] = ServedModel(
                loaded, _make_batcher(loaded, policy, observe_batch)
            )
            logger.info(
                "loaded %s v%s (%s) sha256=%s",
                loaded.card.name,
                loaded.card.version,
                loaded.card.task,
                loaded.sha256[:12],
            )
        if not models:
            raise ModelLoadError(f"the model store {model_dir} holds no model folders")
        return cls(models, device)

    @property
    def models(self) -> list[ServedModel]:
        """All served models, sorted by name."""
        return [self._models[name] for name in sorted(self._models)]

    def get(self, name: str) -> ServedModel:
        """The model called `name`, or 404."""
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFound(
                f"No model named {name!r}.", model=name, available=sorted(self._models)
            ) from None

    def get_for_task(self, name: str, task: Task) -> ServedModel:
        """The model called `name`, or 404; 409 when it does another task."""
        served = self.get(name)
        if served.card.task != task:
            raise WrongTask(
                f"Model {name!r} is a {served.card.task} model; it cannot {task}.",
                model=name,
                task=served.card.task,
            )
        return served

    def start(self, max_batch_size: int, autotune: bool) -> None:
        """Warm every model up at each batch size, pick its batch size, start its batcher."""
        for served in self.models:
            _warm_up_and_tune(served, max_batch_size, autotune)
            served.batcher.start()
        self.ready = True

    def stop(self) -> None:
        """Stop accepting work and drain every batcher."""
        self.ready = False
        for served in self.models:
            served.batcher.stop()


def _make_batcher(
    loaded: LoadedModel, policy: BatchPolicy, observe_batch: BatchObserver | None
) -> DynamicBatcher[Any, Any]:
    name = loaded.card.name

    def observe(size: int, seconds: float) -> None:
        if observe_batch is not None:
            observe_batch(name, size, seconds)

    return DynamicBatcher(name, _runner(loaded), policy, observe)


def _runner(loaded: LoadedModel) -> Callable[[list[Any]], Sequence[Any]]:
    if loaded.card.task == "detect":
        return make_detect_runner(loaded)
    return make_classify_runner(loaded)


def _warm_up_batch(card: ModelCard, size: int) -> list[Any]:
    spec = card.input
    if card.task == "detect":
        return detect_warm_up_batch(spec.channels, spec.resize_size, size)
    height, width = spec.tensor_size
    return classify_warm_up_batch(spec.channels, height, width, size)


def _warm_up_and_tune(served: ServedModel, cap: int, autotune: bool) -> None:
    run = _runner(served.loaded)
    sizes = candidate_sizes(cap)
    batches = {size: _warm_up_batch(served.card, size) for size in sizes}
    for batch in batches.values():  # first calls compile and pick kernels, per shape
        run(batch)
    if not autotune:
        logger.info("%s: warmed up; batch size %d", served.name, cap)
        return
    rates = measure_batch_rates(lambda size: run(batches[size]), sizes, budget_s=0.3)
    chosen = best_batch_size(rates)
    served.batcher.resize(chosen)
    measured = ", ".join(f"{size}: {rate:.0f}/s" for size, rate in rates.items())
    logger.info(
        "%s: batch size %d (of at most %d; measured %s)", served.name, chosen, cap, measured
    )
