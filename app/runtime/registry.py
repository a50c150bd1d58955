"""The model store in memory: every served model with its batcher, looked up by name."""

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from app.errors import ModelLoadError, ModelNotFound, WrongTask
from app.runtime.autotune import TuningPolicy, runner_for, tune_model
from app.runtime.batching import BatchPolicy, BatchRecord, DynamicBatcher
from app.runtime.card import ModelCard, Task
from app.runtime.encryption import ModelKey
from app.runtime.loader import LoadedModel, discover_model_dirs, load_model
from app.runtime.signing import TrustedKey
from app.runtime.tuning import Tuning

logger = logging.getLogger(__name__)

BatchObserver = Callable[[str, BatchRecord], None]


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A loaded model, the batcher that feeds it, and how it was tuned."""

    loaded: LoadedModel
    # Items and outputs depend on the task: ClassifyInput -> ClassifiedImage,
    # DetectInput -> list[DetectedObject], or SegmentInput -> SegmentedImage; the task's
    # service knows which.
    batcher: DynamicBatcher[Any, Any]
    tuning: Tuning

    @property
    def card(self) -> ModelCard:
        """The model's card."""
        return self.loaded.card

    @property
    def name(self) -> str:
        """The model's name in the store."""
        return self.loaded.card.name


@dataclass(frozen=True, kw_only=True)
class RefusedModel:
    """A model folder the store holds but the service refused to serve, and why."""

    folder: str
    reason: str


class ModelRegistry:
    """Loads every model in the store once, warms each up, and hands them out by name.

    A folder that fails to load or verify is refused (logged, listed in /models) and the others
    are served; a store where every folder fails is an error.
    """

    def __init__(
        self,
        models: dict[str, ServedModel],
        device: torch.device,
        refused: tuple[RefusedModel, ...] = (),
        trusted_keys: dict[str, TrustedKey] | None = None,
    ) -> None:
        self._models = models
        self.device = device
        self.refused = refused
        self.trusted_keys = trusted_keys or {}
        self.ready = False

    @classmethod
    def from_store(
        cls,
        model_dir: Path,
        device: torch.device,
        policy: BatchPolicy,
        tuning: TuningPolicy,
        observe_batch: BatchObserver | None = None,
        *,
        trusted_keys: dict[str, TrustedKey] | None = None,
        model_keys: dict[str, ModelKey] | None = None,
    ) -> "ModelRegistry":
        """Load, verify, tune and warm up every model folder under `model_dir`."""
        models: dict[str, ServedModel] = {}
        refused: list[RefusedModel] = []
        for directory in discover_model_dirs(model_dir):
            try:
                loaded = load_model(directory, device, trusted_keys, model_keys)
            except ModelLoadError as error:
                logger.error("refused %s: %s", directory.name, error)
                refused.append(RefusedModel(folder=directory.name, reason=str(error)))
                continue
            loaded, tuned = tune_model(loaded, tuning)
            batching = replace(policy, max_batch_size=tuned.batch_size)
            models[loaded.card.name] = ServedModel(
                loaded, _make_batcher(loaded, batching, observe_batch), tuned
            )
            logger.info(
                "loaded %s v%s (%s) sha256=%s signature %s",
                loaded.card.name,
                loaded.card.version,
                loaded.card.task,
                loaded.sha256[:12],
                _signature_note(loaded),
            )
        if not models:
            reasons = "; ".join(item.reason for item in refused)
            raise ModelLoadError(
                f"the model store {model_dir} holds no servable model folders"
                + (f": {reasons}" if reasons else "")
            )
        return cls(models, device, tuple(refused), trusted_keys)

    @property
    def signatures_checked(self) -> bool:
        """Whether models had to verify against trusted keys to be served."""
        return bool(self.trusted_keys)

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

    def start(self) -> None:
        """Start every model's batcher (they were warmed up as they were tuned)."""
        for served in self.models:
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

    def observe(record: BatchRecord) -> None:
        if observe_batch is not None:
            observe_batch(name, record)

    return DynamicBatcher(name, runner_for(loaded), policy, observe)


def _signature_note(loaded: LoadedModel) -> str:
    check = loaded.signature
    if check.key_id is None:
        return check.status
    return f"{check.status} ({check.key_name} {check.key_id})"
