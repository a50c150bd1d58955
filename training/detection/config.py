"""The detector training configuration: one frozen object, written to the run folder."""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from training.config import ConfigError


@dataclass(frozen=True)
class DetectionTrainConfig:
    """Everything a detector run depends on; defaults are the CPU recipe for builtin:scenes."""

    data: str
    arch: str = "fasterrcnn_mobilenet_v2"
    weights: str = "imagenet"
    name: str | None = None
    model_version: str = "1.0.0"
    runs: Path = Path("runs")
    store: Path = Path("models")
    export: bool = True
    # Data
    image_size: int = 320
    scenes: int = 2000  # builtin:scenes training scenes (val and test: 10% and 15% of it)
    max_images: int | None = None  # train on the first N images (smoke tests)
    workers: int = 2
    # Model
    fpn_channels: int = 128
    trainable_layers: int = 3
    score_threshold: float = 0.5  # the card's default; the model itself keeps >= 0.05
    # Recipe
    epochs: int = 6
    batch_size: int = 8
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 4e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 0.3
    min_lr_ratio: float = 0.05
    clip_grad_norm: float = 10.0
    patience: int = 0
    # Machine
    device: str = "auto"
    amp: Literal["auto", "on", "off"] = "auto"
    threads: int = 0
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.lr > 0, "lr must be positive"),
            (self.image_size >= 32, "image_size must be >= 32"),
            (0 <= self.score_threshold <= 1, "score_threshold is a probability"),
            (1 <= self.trainable_layers <= 5, "trainable_layers is 1..5"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def model_name(self) -> str:
        """The name in the model store: --name, else derived from the data source."""
        if self.name:
            return self.name
        stem = self.data.removeprefix("builtin:").rstrip("/").split("/")[-1].lower()
        cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).strip("-._")
        return (cleaned or "objects") + "-detector"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, as stored in config.json and checkpoints."""
        return {
            f.name: str(value) if isinstance(value, Path) else value
            for f in dataclasses.fields(self)
            for value in [getattr(self, f.name)]
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DetectionTrainConfig":
        """Inverse of to_dict; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        converted: dict[str, Any] = {
            k: Path(v) if k in ("runs", "store") else v for k, v in values.items()
        }
        return cls(**converted)

    def to_json(self) -> str:
        """The resolved configuration as written to the run folder."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
