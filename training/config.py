"""The training configuration: one frozen object, written to the run folder as config.json."""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

Optimizer = Literal["adamw", "sgd"]
Balance = Literal["none", "weights", "sampler"]
Augment = Literal["auto", "none", "small", "standard"]
ColorMode = Literal["auto", "RGB", "L"]
Switch = Literal["auto", "on", "off"]


class ConfigError(ValueError):
    """An option value that cannot work; the message names the option."""


@dataclass(frozen=True)
class RunConfig:
    """What every training run (classifier or detector) is configured by, and how it is stored.

    Subclasses add their own options and restate the defaults that differ for their task.
    """

    # A task whose batch size and learning rate may be 0 = scaled to its data (training/recipe.py).
    scales_recipe: ClassVar[bool] = False

    data: str
    arch: str
    weights: str = "none"
    name: str | None = None
    model_version: str = "1.0.0"
    overwrite: bool = False  # replace models/<name>; the new card gets a newer version
    runs: Path = Path("runs")
    store: Path = Path("models")
    export: bool = True
    workers: int = 2
    # Recipe
    epochs: int = 20
    batch_size: int = 128
    optimizer: Optimizer = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    clip_grad_norm: float = 0.0
    patience: int = 0
    # Machine
    device: str = "auto"
    amp: Switch = "auto"
    threads: int = 0
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "epochs must be at least 1")
        auto = self.scales_recipe
        _require(self.batch_size >= 1 or (auto and self.batch_size == 0), "batch_size must be >= 1")
        _require(self.lr > 0 or (auto and self.lr == 0), "lr must be positive")

    def _fallback_name(self, stem: str) -> str:
        """The store name derived from the data's folder or built-in name."""
        return stem or "classifier"

    @property
    def model_name(self) -> str:
        """The name in the model store: --name, else derived from the data source."""
        if self.name:
            return self.name
        stem = self.data.removeprefix("builtin:").rstrip("/").split("/")[-1].lower()
        cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).strip("-._")
        return self._fallback_name(cleaned)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (paths as strings), as stored in config.json and checkpoints."""
        return {
            field.name: str(value) if isinstance(value, Path) else value
            for field in dataclasses.fields(self)
            for value in [getattr(self, field.name)]
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Inverse of to_dict; unknown keys are an error so typos never pass silently."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        converted: dict[str, Any] = {
            key: Path(value) if key in ("runs", "store") else value for key, value in values.items()
        }
        return cls(**converted)

    def to_json(self) -> str:
        """The resolved configuration as written to the run folder."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """A classifier run; defaults are the recipe for small images."""

    scales_recipe: ClassVar[bool] = True

    arch: str = "smallcnn"
    # Data
    image_size: int | None = None
    color_mode: ColorMode = "auto"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_per_class: int | None = None
    # Recipe; 0 = scaled to the training images (training/recipe.py: scale_recipe)
    batch_size: int = 0
    lr: float = 0.0
    label_smoothing: float = 0.1
    balance: Balance = "none"
    augment: Augment = "auto"
    random_erasing: float = 0.0
    freeze_backbone_epochs: int = 0
    # Machine
    channels_last: Switch = "auto"
    deterministic: bool = False
    # Decisions, fitted on the validation split after export (training/calibrate.py)
    calibrate: bool = True
    target_tpr: float = 0.95
    match_precision: float = 0.98
    unknown: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)")
        _require(0 <= self.test_fraction < 1, "test_fraction must be in [0, 1)")
        _require(self.val_fraction + self.test_fraction < 1, "val + test fractions must be < 1")
        _require(0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)")
        _require(0 <= self.random_erasing <= 1, "random_erasing is a probability")
        _require(self.max_per_class is None or self.max_per_class >= 1, "max_per_class >= 1")
        _require(self.image_size is None or self.image_size >= 8, "image_size must be >= 8")
        _require(0 < self.target_tpr <= 1, "target_tpr must be in (0, 1]")
        _require(0 < self.match_precision <= 1, "match_precision must be in (0, 1]")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
