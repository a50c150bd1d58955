"""The classifier a run trains: from --arch and --weights, its input rule, its frozen layers."""

import logging

import torch
from torch import nn

from app.runtime.card import InputSpec
from training.classification.config import TrainConfig
from training.classification.data import DataSplits
from training.classification.models import SMALL_CNNS, create_classifier, make_input_spec
from training.classification.modules import NormalizedClassifier
from training.classification.transforms import EvalPreset, channel_statistics
from training.core.checkpoint import Checkpoint

logger = logging.getLogger(__name__)

_STATISTICS_SAMPLE = 2000  # training images whose channel mean/std a from-scratch model uses


def build_model(
    config: TrainConfig, data: DataSplits, resume: Checkpoint | None
) -> tuple[NormalizedClassifier, InputSpec, str, str]:
    """The model, its input rule, its head's name and where its weights came from.

    A resumed run takes the checkpoint's input rule and weights; a new model from scratch
    normalises by the training images' own channel statistics.
    """
    color_mode = data.color_mode if config.color_mode == "auto" else config.color_mode
    in_channels = 1 if color_mode == "L" and config.arch in SMALL_CNNS else 3
    weights = "none" if resume is not None else config.weights
    created = create_classifier(config.arch, len(data.classes), weights, in_channels)
    if resume is not None:
        spec = InputSpec.model_validate(resume.input_spec)
    else:
        placeholder = _placeholder_statistics(in_channels)
        spec = make_input_spec(
            created, config.image_size, color_mode, data.native_size, placeholder
        )
        if created.pretrained_input is None:
            statistics = channel_statistics(_sample(data, spec))
            spec = make_input_spec(
                created, config.image_size, color_mode, data.native_size, statistics
            )
    normalization = spec.normalization
    assert normalization is not None
    model = NormalizedClassifier(created.backbone, normalization.mean, normalization.std)
    if resume is not None:
        model.load_state_dict(resume.model)
    return model, spec, created.head, created.weights_source


def frozen_layers(backbone: nn.Module, head: str, epochs: int, log: bool) -> list[nn.Module]:
    """The backbone's layers outside the head, which --freeze-backbone-epochs holds still.

    Their learning rate is zero for those epochs (training/core/recipe.py) and they run in eval
    mode, so batch norm neither updates its running statistics nor normalises by the batch.
    """
    if epochs <= 0:
        return []
    layers = [
        module
        for name, module in backbone.named_modules()
        if name and not any(module.children()) and not (name + ".").startswith(head + ".")
    ]
    norms = sum(isinstance(layer, nn.modules.batchnorm._BatchNorm) for layer in layers)
    count = sum(p.numel() for layer in layers for p in layer.parameters())
    if log:
        logger.info(
            "backbone frozen for %d epochs: %d layers (%d batch-norm in eval mode), %s "
            "parameters; training %s only",
            epochs,
            len(layers),
            norms,
            f"{count:,}",
            head,
        )
    return layers


def _placeholder_statistics(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return (0.5,) * channels, (0.25,) * channels


def _sample(data: DataSplits, spec: InputSpec) -> list[torch.Tensor]:
    """Up to 2000 evenly spaced training images, as the eval preset gives them."""
    preset = EvalPreset(spec)
    stride = max(1, len(data.train) // _STATISTICS_SAMPLE)
    return [preset(data.train.load(i)) for i in range(0, len(data.train), stride)]
