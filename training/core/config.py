"""The run configuration every task shares: one frozen object, written as the run's config.json."""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

Optimizer = Literal["adamw", "sgd"]


Switch = Literal["auto", "on", "off"]


class ConfigError(ValueError):
    """An option value that cannot work; the message names the option."""


@dataclass(frozen=True)
class RunConfig:
    """What every training run (classifier or detector) is configured by, and how it is stored.

    Subclasses add their own options and restate the defaults that differ for their task.
    """

    # A task whose batch size and learning rate may be 0 = scaled to its data
    # (classification/recipe.py: scale_recipe).
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
        require(self.epochs >= 1, "epochs must be at least 1")
        auto = self.scales_recipe
        require(self.batch_size >= 1 or (auto and self.batch_size == 0), "batch_size must be >= 1")
        require(self.lr > 0 or (auto and self.lr == 0), "lr must be positive")

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


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
