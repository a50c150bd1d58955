"""The training configuration: one frozen object, written to the run folder as config.json."""

from dataclasses import dataclass
from typing import ClassVar, Literal

from training.core.config import RunConfig, Switch, require

Balance = Literal["none", "weights", "sampler"]
Augment = Literal["auto", "none", "small", "standard"]
ColorMode = Literal["auto", "RGB", "L"]
DEFAULT_WATERMARK_SIZE = 100
DEFAULT_WATERMARK_SHARE = 0.2


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
    # Recipe; 0 = scaled to the training images (classification/recipe.py: scale_recipe)
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
    # Decisions, fitted on the validation split after export (classification/calibrate.py)
    calibrate: bool = True
    target_tpr: float = 0.95
    match_precision: float = 0.98
    unknown: str | None = None
    # Ownership watermark (classification/watermark.py): a key file's trigger set is learned too,
    # as about `watermark_share` of each epoch's samples. Size and share need the key: None =
    # the defaults below when there is one.
    watermark_key: str | None = None
    watermark_size: int | None = None
    watermark_share: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)")
        require(0 <= self.test_fraction < 1, "test_fraction must be in [0, 1)")
        require(self.val_fraction + self.test_fraction < 1, "val + test fractions must be < 1")
        require(0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)")
        require(0 <= self.random_erasing <= 1, "random_erasing is a probability")
        require(self.max_per_class is None or self.max_per_class >= 1, "max_per_class >= 1")
        require(self.image_size is None or self.image_size >= 8, "image_size must be >= 8")
        require(0 < self.target_tpr <= 1, "target_tpr must be in (0, 1]")
        require(0 < self.match_precision <= 1, "match_precision must be in (0, 1]")
        self._check_watermark()

    def _check_watermark(self) -> None:
        size, share = self.watermark_size, self.watermark_share
        if self.watermark_key is None:
            require(size is None and share is None, "watermark_size/share need watermark_key")
        require(size is None or size >= 1, "watermark_size must be at least 1")
        require(share is None or 0 < share < 1, "watermark_share must be in (0, 1)")

    @property
    def trigger_count(self) -> int:
        """The watermark's number of trigger images."""
        return self.watermark_size or DEFAULT_WATERMARK_SIZE

    @property
    def trigger_share(self) -> float:
        """The share of each epoch's samples the triggers are oversampled to."""
        return self.watermark_share or DEFAULT_WATERMARK_SHARE
