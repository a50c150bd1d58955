"""A factory over torchvision classifiers: any of them by name, with weights from three sources."""

import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models import get_model, get_model_weights, list_models

from app.runtime.card import Evaluation, InputSpec, Normalization

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BuiltClassifier:
    """An eager classifier with what its card needs to say about it."""

    model: nn.Module
    labels: tuple[str, ...]
    input: InputSpec
    metrics: tuple[Evaluation, ...]
    weights_source: str


def classifier_names() -> list[str]:
    """Every torchvision classification architecture."""
    return sorted(list_models(module=torchvision.models))


def build_classifier(arch: str, weights: str, labels: tuple[str, ...] = ()) -> BuiltClassifier:
    """`weights`: `imagenet` (the enum's DEFAULT), an enum member such as `IMAGENET1K_V1`,
    a state-dict path, or `none`."""
    if arch not in classifier_names():
        choices = ", ".join(classifier_names())
        raise ValueError(f"unknown architecture {arch!r}; choose from {choices}")
    enum = get_model_weights(arch)
    if weights == "imagenet":
        return _from_torchvision_weights(arch, enum.DEFAULT)
    if weights in enum.__members__:
        return _from_torchvision_weights(arch, enum[weights])
    if not labels:
        raise ValueError("--labels is required unless --weights imagenet provides them")
    model = get_model(arch, weights=None, num_classes=len(labels))
    source = "random initialisation"
    if weights != "none":
        state = torch.load(Path(weights), map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        source = f"state dict {weights}"
    spec = InputSpec(
        resize_size=256,
        crop_size=224,
        normalization=Normalization(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    )
    return BuiltClassifier(model, labels, spec, (), source)


def framework_versions() -> dict[str, str]:
    """Versions recorded in every card."""
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def _from_torchvision_weights(arch: str, weights: Any) -> BuiltClassifier:
    enum_name = type(weights).__name__
    # Offline, this reads torch.hub's cache; `python -m training offline-weights` fills it.
    model = get_model(arch, weights=weights)
    preset: Any = weights.transforms()
    spec = InputSpec(
        resize_size=int(preset.resize_size[0]),
        crop_size=int(preset.crop_size[0]),
        interpolation=preset.interpolation.value,
        normalization=Normalization(mean=tuple(preset.mean), std=tuple(preset.std)),
    )
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
    return BuiltClassifier(model, labels, spec, metrics, f"torchvision {enum_name}.{weights.name}")
