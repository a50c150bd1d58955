"""The segmenter training configuration: one frozen object, written to the run folder."""

from dataclasses import dataclass

from training.core.config import ConfigError, RunConfig


@dataclass(frozen=True)
class SegmentationTrainConfig(RunConfig):
    """A segmenter run; defaults are the CPU recipe for builtin:scenes-seg."""

    arch: str = "lraspp_mobilenet_v2"
    weights: str = "imagenet"
    # Data
    image_size: int = 256  # the square the whole image is stretched to (the card's input)
    scenes: int = 2000  # builtin:scenes-seg training scenes (val and test: 10% and 15% of it)
    val_fraction: float = 0.1  # for a mask folder without split folders
    test_fraction: float = 0.15
    max_images: int | None = None  # train on the first N images (smoke tests)
    # Model
    head_channels: int = 128
    trainable_layers: int = 12  # MobileNetV2 blocks trained, from the top (of 19)
    # Recipe
    epochs: int = 8
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.3
    min_lr_ratio: float = 0.02
    clip_grad_norm: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            (self.image_size >= 32 and self.image_size % 32 == 0, "image_size: a multiple of 32"),
            (1 <= self.trainable_layers <= 19, "trainable_layers is 1..19"),
            (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1, "fractions in [0, 1)"),
            (self.val_fraction + self.test_fraction < 1, "val + test fractions must be < 1"),
            (self.max_images is None or self.max_images >= 1, "max_images >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def _fallback_name(self, stem: str) -> str:
        return (stem.removesuffix("-seg") or "objects") + "-segmenter"
