"""Tuning profiles: a model's measured configuration, kept per model, machine and thread plan.

Measuring at every start costs seconds and, however careful, can land on either side of a close
call; a profile makes every later start serve what the first one measured. One JSON file per
model in the tuning folder (`VISION_TUNING_DIR`), readable and safe to delete (the next start or
`python -m app tune` measures again). A profile is used only when its key matches exactly: another
archive (sha256), CPU, torch, device, thread plan or tuning setting means measuring again.
"""

import dataclasses
import logging
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from app.runtime.tuning import Tuning

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ProfileKey:
    """Everything a measured choice depends on."""

    model_sha256: str
    cpu: str
    torch_version: str
    device: str
    inference_threads: int
    torch_threads: int
    max_batch_size: int
    optimize_cpu: bool
    autotune_batch_size: bool
    # Batch costs moved 1.2-2x when the allocator changed (bench/allocator.py): a profile
    # measured under another allocator set-up is measured again.
    allocator: str
    # The precision the forward runs in (runtime/precision.py): absent from older profiles.
    precision: str = "fp32"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TuningProfile:
    """One model's tuning as stored: the key it holds for, the choice, when it was measured."""

    key: ProfileKey
    tuning: Tuning
    measured_at: str


_PROFILE = TypeAdapter(TuningProfile)


def profile_path(directory: Path, model_name: str) -> Path:
    """Where the profile of `model_name` lives."""
    return directory / f"{model_name}.json"


def read_profile(directory: Path, model_name: str, key: ProfileKey) -> Tuning | None:
    """The stored tuning when its key matches `key`; None (and the log says why) otherwise."""
    path = profile_path(directory, model_name)
    if not path.is_file():
        return None
    try:
        profile = _PROFILE.validate_json(path.read_bytes())
    except (OSError, ValidationError) as error:
        logger.warning("%s: unreadable tuning profile, measuring again (%s)", path, error)
        return None
    if profile.key != key:
        changed = [
            field.name
            for field in dataclasses.fields(ProfileKey)
            if getattr(profile.key, field.name) != getattr(key, field.name)
        ]
        logger.info("%s: made for another %s; measuring again", path, ", ".join(changed))
        return None
    return profile.tuning


def write_profile(directory: Path, model_name: str, key: ProfileKey, tuning: Tuning) -> Path | None:
    """Store `tuning` for `key` (replacing the model's old profile); None when it cannot."""
    path = profile_path(directory, model_name)
    measured_at = datetime.now(UTC).isoformat(timespec="seconds")
    profile = TuningProfile(
        key=key, tuning=dataclasses.replace(tuning, profile=None), measured_at=measured_at
    )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(_PROFILE.dump_json(profile, indent=2))
        partial.replace(path)  # atomic: a concurrent start reads the old file or the new one
    except OSError as error:
        # A read-only folder costs the next start a measurement, not the service.
        logger.warning("could not write the tuning profile %s: %s", path, error)
        return None
    return path


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
