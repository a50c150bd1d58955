"""The detector training configuration: one frozen object, written to the run folder."""

from dataclasses import dataclass

from training.core.config import ConfigError, RunConfig


@dataclass(frozen=True)
class DetectionTrainConfig(RunConfig):
    """A detector run; defaults are the CPU recipe for builtin:scenes."""

    arch: str = "fasterrcnn_mobilenet_v2"
    weights: str = "imagenet"
    # Data
    image_size: int = 320
    scenes: int = 2000  # builtin:scenes training scenes (val and test: 10% and 15% of it)
    max_images: int | None = None  # train on the first N images (smoke tests)
    # Model
    fpn_channels: int = 128
    trainable_layers: int = 3
    score_threshold: float = 0.5  # the card's default; the model itself keeps >= 0.05
    # Recipe
    epochs: int = 6
    batch_size: int = 8
    lr: float = 4e-4
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.3
    min_lr_ratio: float = 0.05
    clip_grad_norm: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            (self.image_size >= 32, "image_size must be >= 32"),
            (0 <= self.score_threshold <= 1, "score_threshold is a probability"),
            (1 <= self.trainable_layers <= 5, "trainable_layers is 1..5"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def _fallback_name(self, stem: str) -> str:
        return (stem or "objects") + "-detector"
