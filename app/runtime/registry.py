"""The served models: one immutable set at a time, switched whole, looked up by `name[@version]`.

A reload builds a new `ModelSet` beside the current one and `switch`es to it in one assignment;
a request resolves its model once, so it finishes on the set it began with. Models the new set
no longer holds are retired (batcher drained and stopped, memory given back) once every request
that began before the switch has answered (`readers.ReaderEpochs`).
"""

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from app.errors import ModelNotFound, WrongTask
from app.memory import release_free_memory
from app.runtime.batching import DynamicBatcher
from app.runtime.card import ModelCard, Task
from app.runtime.loader import LoadedModel
from app.runtime.precision import AS_EXPORTED, PrecisionChoice
from app.runtime.readers import ReaderEpochs
from app.runtime.signing import TrustedKey
from app.runtime.store import ModelRef, served_ref, version_key
from app.runtime.tuning import Tuning

logger = logging.getLogger(__name__)

Retired = Callable[[Sequence["ServedModel"]], None]


# eq=False: identity, as a served model holds a module and threads.
@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class ServedModel:
    """A loaded model, the batcher that feeds it, how it was tuned, and the folder it came from."""

    loaded: LoadedModel
    # Items and outputs depend on the task: ClassifyInput -> ClassifiedImage,
    # DetectInput -> list[DetectedObject], or SegmentInput -> SegmentedImage; the task's
    # service knows which.
    batcher: DynamicBatcher[Any, Any]
    tuning: Tuning
    folder: str
    fingerprint: str  # store.folder_fingerprint when loaded: unchanged folders are kept
    precision: PrecisionChoice = AS_EXPORTED  # what the forward runs in, and the parity behind it

    @property
    def card(self) -> ModelCard:
        """The model's card."""
        return self.loaded.card

    @property
    def name(self) -> str:
        """The model's name in the store."""
        return self.loaded.card.name

    @property
    def ref(self) -> str:
        """`name@version`: this version, whatever the alias says."""
        return served_ref(self.loaded.card)


@dataclass(frozen=True, kw_only=True)
class RefusedModel:
    """A model folder the store holds but the service refused to serve, and why."""

    folder: str
    reason: str
    still_serving: str | None = None  # the folder's previous version, kept after a failed reload


@dataclass(frozen=True, kw_only=True)
class ModelSet:
    """Every model served at one moment, the refused folders, and the pinned default versions."""

    models: tuple[ServedModel, ...] = ()
    refused: tuple[RefusedModel, ...] = ()
    pins: Mapping[str, str] = field(default_factory=dict)
    _by_ref: Mapping[str, ServedModel] = field(init=False, repr=False)
    # Each name's highest version, found once: a bare name is looked up on every request.
    _highest: Mapping[str, ServedModel] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_ref = {served.ref: served for served in self.models}
        object.__setattr__(self, "_by_ref", MappingProxyType(by_ref))
        highest = {served.name: served for served in self._oldest_first(self.models)}
        object.__setattr__(self, "_highest", MappingProxyType(highest))

    @staticmethod
    def _oldest_first(models: Iterable[ServedModel]) -> list[ServedModel]:
        return sorted(models, key=lambda served: version_key(served.card.version))

    def versions(self, name: str) -> list[ServedModel]:
        """Every served version of `name`, oldest first."""
        return self._oldest_first(served for served in self.models if served.name == name)

    def default(self, name: str) -> ServedModel:
        """The version a bare `name` means: the pinned one, else the highest; or 404."""
        pinned = self.pins.get(name)
        if pinned is not None:
            served = self._by_ref.get(str(ModelRef(name=name, version=pinned)))
            if served is None:
                raise ModelNotFound(
                    f"Model {name!r} is pinned to version {pinned!r}, which is not served.",
                    model=name,
                    pinned=pinned,
                    versions=[served.ref for served in self.versions(name)],
                )
            return served
        highest = self._highest.get(name)
        if highest is None:
            raise ModelNotFound(f"No model named {name!r}.", model=name, available=self.names())
        return highest

    def resolve(self, text: str) -> ServedModel:
        """The model `name` or `name@version` names, or 404."""
        ref = ModelRef.parse(text)
        if ref.version is None:
            return self.default(ref.name)
        served = self._by_ref.get(str(ref))
        if served is None:
            raise ModelNotFound(
                f"No model {text!r} (no such name or version).",
                model=text,
                available=self.names(),
                versions=[served.ref for served in self.versions(ref.name)],
            )
        return served

    def names(self) -> list[str]:
        """Every name served (a request may add `@version`)."""
        return sorted({served.name for served in self.models})

    def is_default(self, served: ServedModel) -> bool:
        """Whether a bare name resolves to this version."""
        try:
            return self.default(served.name) is served
        except ModelNotFound:
            return False


class ModelRegistry:
    """The current model set, switched whole by reloads; lookups by name, version and task."""

    def __init__(
        self,
        device: torch.device,
        trusted_keys: dict[str, TrustedKey] | None = None,
        epochs: ReaderEpochs | None = None,
    ) -> None:
        self.device = device
        self.trusted_keys = trusted_keys or {}
        self.epochs = epochs or ReaderEpochs()
        self.ready = False
        self._set = ModelSet()
        self._switching = threading.Lock()
        self._stopping = threading.Event()
        self._retiring: list[threading.Thread] = []

    @property
    def current(self) -> ModelSet:
        """The set requests beginning now are served from."""
        return self._set

    @property
    def signatures_checked(self) -> bool:
        """Whether models had to verify against trusted keys to be served."""
        return bool(self.trusted_keys)

    @property
    def models(self) -> list[ServedModel]:
        """All served models (every version), sorted by name then version."""
        return sorted(self._set.models, key=lambda m: (m.name, version_key(m.card.version)))

    @property
    def refused(self) -> tuple[RefusedModel, ...]:
        """Folders the last load refused, and why."""
        return self._set.refused

    def get(self, name: str) -> ServedModel:
        """The model `name` (its default version) or `name@version`, or 404."""
        return self._set.resolve(name)

    def get_for_task(self, name: str, task: Task) -> ServedModel:
        """The model `name` or `name@version`, or 404; 409 when it does another task."""
        served = self.get(name)
        if served.card.task != task:
            raise WrongTask(
                f"Model {name!r} is a {served.card.task} model; it cannot {task}.",
                model=name,
                task=served.card.task,
            )
        return served

    def ref_for_sha256(self, name: str, sha256: str) -> str:
        """`name@version` of the served version of `name` with this archive, else `name`."""
        for served in self._set.versions(name):
            if served.loaded.sha256 == sha256:
                return served.ref
        return name

    def switch(self, new: ModelSet) -> int:
        """Serve `new` from now on; the epoch whose requests may still hold the old set."""
        with self._switching:
            self._set = new  # one assignment: a lookup sees the old set or the new one
            return self.epochs.advance()

    def retire(self, models: Sequence[ServedModel], epoch: int, wait_s: float) -> None:
        """Stop `models` once no request of `epoch` or earlier runs (at most `wait_s` later)."""
        if not models:
            return
        thread = threading.Thread(
            target=self._retire, args=(list(models), epoch, wait_s), name="retire", daemon=True
        )
        self._retiring = [alive for alive in self._retiring if alive.is_alive()] + [thread]
        thread.start()

    def wait_retired(self, timeout_s: float) -> bool:
        """Wait for pending retirements (tests, shutdown); False if some are still running."""
        deadline = time.monotonic() + timeout_s
        for thread in list(self._retiring):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._retiring)

    def start(self) -> None:
        """Start the current set's batchers (they were warmed up as they were tuned)."""
        for served in self._set.models:
            served.batcher.start()
        self.ready = True

    def stop(self) -> None:
        """Stop accepting work and drain every batcher, retiring ones included."""
        self.ready = False
        self._stopping.set()
        for served in self._set.models:
            served.batcher.stop()
        self.wait_retired(60.0)

    def _retire(self, models: list[ServedModel], epoch: int, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while not self.epochs.wait_until_done(epoch, 0.2):
            if self._stopping.is_set() or time.monotonic() >= deadline:
                left = self.epochs.in_flight(epoch)
                logger.warning("retiring with %d request(s) of the old set still running", left)
                break
        for served in models:
            served.batcher.stop()  # finishes what is queued, then joins its workers
        refs = ", ".join(served.ref for served in models)
        models.clear()
        gc.collect()  # TorchScript modules hold reference cycles; free them now, not later
        release_free_memory()
        logger.info("retired %s", refs)
