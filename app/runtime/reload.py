"""Load the store into a new model set beside the served one, switch to it, retire the old.

Unchanged folders (same archive, card and signature bytes) keep their model and batcher; changed
and new ones are loaded, verified, tuned from their profile and warmed up before the switch; a
folder that fails keeps its old version serving and is reported refused. Aliases change the
default version of a name without loading anything.
"""

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from app.errors import ModelLoadError, ModelNotFound
from app.runtime.autotune import TuningPolicy, runner_for, tune_model
from app.runtime.batching import BatchPolicy, BatchRecord, DynamicBatcher
from app.runtime.encryption import ModelKey
from app.runtime.loader import LoadedModel, discover_model_dirs, load_model
from app.runtime.precision import RequestedPrecision, choose_precision
from app.runtime.registry import ModelRegistry, ModelSet, RefusedModel, ServedModel
from app.runtime.signing import TrustedKey
from app.runtime.store import ModelRef, folder_fingerprint, read_aliases, write_aliases

logger = logging.getLogger(__name__)

BatchObserver = Callable[[str, BatchRecord], None]


class ModelObserver(Protocol):
    """Told what each load did (the metrics)."""

    def observe_loaded(
        self, loaded: Sequence[ServedModel], refused: Sequence[RefusedModel]
    ) -> None: ...

    def observe_retired(self, models: Sequence[ServedModel]) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadPolicy:
    """Where the store is and how each of its models is verified, tuned and batched."""

    model_dir: Path
    device: torch.device
    batching: BatchPolicy
    tuning: TuningPolicy
    trusted_keys: dict[str, TrustedKey]
    model_keys: dict[str, ModelKey] = field(default_factory=dict)  # decrypt model.pt.enc
    observe_batch: BatchObserver | None = None
    retire_wait_s: float = 120.0  # longest wait for old requests before stopping old batchers
    precision: RequestedPrecision = "fp32"  # half precision, parity-checked per model (CUDA)


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelChange:
    """One folder's outcome: the version it serves now, and the one it served before."""

    folder: str
    ref: str | None = None
    sha256: str | None = None
    previous_ref: str | None = None
    previous_sha256: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ReloadReport:
    """What a load changed (folders), the refusals, and the default version of every name."""

    added: tuple[ModelChange, ...]
    replaced: tuple[ModelChange, ...]
    kept: tuple[ModelChange, ...]
    removed: tuple[ModelChange, ...]
    refused: tuple[RefusedModel, ...]
    defaults: dict[str, str | None]  # name -> the name@version a bare name resolves to


@dataclass(kw_only=True, slots=True)
class _Build:
    """A new set under construction: what each folder became."""

    models: list[ServedModel]
    loaded: list[ServedModel]
    refused: list[RefusedModel]


class ModelReloader:
    """Builds model sets from the store and switches the registry to them, one load at a time."""

    def __init__(
        self, registry: ModelRegistry, policy: LoadPolicy, observer: ModelObserver | None = None
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.observer = observer
        self._lock = threading.Lock()  # one reload or alias change at a time
        self._unsaved_pins: dict[str, str | None] = {}  # alias changes the store could not keep

    def reload(self, *, force: bool = False) -> ReloadReport:
        """Load what changed in the store (everything with `force`) and switch to it.

        ModelLoadError (nothing switched) when the store or its aliases file cannot be read, or
        no folder is servable.
        """
        with self._lock:
            old = self.registry.current
            pins = self._pins()
            build = self._build(old, force)
            if not build.models:
                reasons = "; ".join(item.reason for item in build.refused)
                raise ModelLoadError(
                    f"the model store {self.policy.model_dir} holds no servable model folders"
                    + (f": {reasons}" if reasons else "")
                )
            new = ModelSet(models=tuple(build.models), refused=tuple(build.refused), pins=pins)
            if self.registry.ready:
                for served in build.loaded:
                    served.batcher.start()
            epoch = self.registry.switch(new)
            staying = {id(served) for served in build.models}
            leaving = [served for served in old.models if id(served) not in staying]
            if self.observer is not None:
                self.observer.observe_loaded(build.loaded, build.refused)
                self.observer.observe_retired(leaving)
            if self.registry.ready:
                self.registry.retire(leaving, epoch, self.policy.retire_wait_s)
            return _report(old, new, build)

    def set_alias(self, name: str, version: str | None) -> tuple[ModelSet, Path | str]:
        """Pin `name` to `version` (None: follow the highest); where it was saved, or why not."""
        with self._lock:
            current = self.registry.current
            if version is not None:
                current.resolve(str(ModelRef(name=name, version=version)))  # 404 unless served
            elif not current.versions(name):
                current.default(name)  # 404 for a name not served
            saved = self._save_pin(name, version)
            pins = {key: value for key, value in current.pins.items() if key != name}
            if version is not None:
                pins[name] = version
            new = replace(current, pins=pins)  # what is in force, changed: never half a file
            self.registry.switch(new)  # same models: nothing to retire
            return new, saved

    def _save_pin(self, name: str, version: str | None) -> Path | str:
        model_dir = self.policy.model_dir
        try:
            pins = read_aliases(model_dir)
            if version is None:
                pins.pop(name, None)
            else:
                pins[name] = version
            path = write_aliases(model_dir, pins)
        except (ModelLoadError, OSError) as error:
            logger.warning("alias %s -> %s held in memory only: %s", name, version, error)
            self._unsaved_pins[name] = version
            return str(error)
        self._unsaved_pins.pop(name, None)
        return path

    def _pins(self) -> dict[str, str]:
        """The aliases file's pins, with the changes it could not keep on top."""
        pins = read_aliases(self.policy.model_dir)
        for name, version in self._unsaved_pins.items():
            if version is None:
                pins.pop(name, None)
            else:
                pins[name] = version
        return pins

    def _build(self, old: ModelSet, force: bool) -> _Build:
        served_from = {served.folder: served for served in old.models}
        build = _Build(models=[], loaded=[], refused=[])
        for directory in discover_model_dirs(self.policy.model_dir):
            previous = served_from.get(directory.name)
            try:
                fingerprint = folder_fingerprint(directory)
                if previous is not None and previous.fingerprint == fingerprint and not force:
                    _add(build, previous, loaded=False)
                    continue
                _add(build, self._load(directory, fingerprint), loaded=True)
            except ModelLoadError as error:
                logger.error("refused %s: %s", directory.name, error)
                kept = previous if previous is not None and _fits(build, previous) else None
                build.refused.append(
                    RefusedModel(
                        folder=directory.name,
                        reason=str(error),
                        still_serving=kept.ref if kept else None,
                    )
                )
                if kept is not None:
                    _add(build, kept, loaded=False)
        return build

    def _load(self, directory: Path, fingerprint: str) -> ServedModel:
        policy = self.policy
        loaded = load_model(directory, policy.device, policy.trusted_keys, policy.model_keys)
        loaded, precision = choose_precision(loaded, policy.precision)
        loaded, tuned = tune_model(loaded, policy.tuning)
        batching = replace(policy.batching, max_batch_size=tuned.batch_size)
        batcher = _make_batcher(loaded, batching, policy.observe_batch)
        logger.info(
            "loaded %s (%s) from %s sha256=%s signature %s",
            f"{loaded.card.name}@{loaded.card.version}",
            loaded.card.task,
            directory.name,
            loaded.sha256[:12],
            _signature_note(loaded),
        )
        return ServedModel(
            loaded=loaded,
            batcher=batcher,
            tuning=tuned,
            precision=precision,
            folder=directory.name,
            fingerprint=fingerprint,
        )


def _fits(build: _Build, served: ServedModel) -> bool:
    """Whether no other folder of the build serves this name and version."""
    return all(other.ref != served.ref for other in build.models)


def _add(build: _Build, served: ServedModel, *, loaded: bool) -> None:
    """Add a folder's model unless another folder already serves that name and version."""
    clash = next((other for other in build.models if other.ref == served.ref), None)
    if clash is not None:
        raise ModelLoadError(f"{served.ref} is already served from folder {clash.folder!r}")
    build.models.append(served)
    if loaded:
        build.loaded.append(served)


def _report(old: ModelSet, new: ModelSet, build: _Build) -> ReloadReport:
    before = {served.folder: served for served in old.models}
    after = {served.folder: served for served in new.models}
    fresh = {id(served) for served in build.loaded}

    def change(folder: str) -> ModelChange:
        now, then = after.get(folder), before.get(folder)
        return ModelChange(
            folder=folder,
            ref=now.ref if now else None,
            sha256=now.loaded.sha256 if now else None,
            previous_ref=then.ref if then else None,
            previous_sha256=then.loaded.sha256 if then else None,
        )

    loaded_folders = [folder for folder, served in after.items() if id(served) in fresh]
    return ReloadReport(
        added=tuple(change(folder) for folder in loaded_folders if folder not in before),
        replaced=tuple(change(folder) for folder in loaded_folders if folder in before),
        kept=tuple(change(folder) for folder in after if folder not in loaded_folders),
        removed=tuple(change(folder) for folder in before if folder not in after),
        refused=new.refused,
        defaults={name: _default_ref(new, name) for name in sorted({m.name for m in new.models})},
    )


def _default_ref(models: ModelSet, name: str) -> str | None:
    try:
        return models.default(name).ref
    except ModelNotFound:  # pinned to a version that is not served
        return None


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
