"""Detector factory: torchvision FCOS / RetinaNet / Faster R-CNN on an ImageNet MobileNetV2 FPN.

The detectors take float images in [0, 1]; `ScriptableDetector` puts the uint8 -> float step in
front so the exported module takes what the service sends (uint8 CHW tensors of any size).
"""

import logging
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import misc as misc_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from training.core.config import ConfigError
from training.core.weights import IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger(__name__)

DETECTOR_ARCHS = ("fcos_mobilenet_v2", "retinanet_mobilenet_v2", "fasterrcnn_mobilenet_v2")
# MobileNetV2 `features` indices whose outputs have strides 8, 16 and 32, and their widths.
_LAYERS = (("6", 32), ("13", 96), ("18", 1280))
_BOX_HEAD_WIDTH = 512


@dataclass(frozen=True)
class DetectorConfig:
    """What shapes a detector: classes (with background), input side, head width, thresholds."""

    arch: str
    num_classes: int
    image_size: int = 320
    fpn_channels: int = 128
    trainable_layers: int = 5
    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    detections_per_image: int = 100


class ScriptableDetector(nn.Module):
    """uint8 CHW images (sizes may differ) -> per-image boxes, scores and labels.

    Boxes come back in the pixel coordinates of the tensor each image arrived as.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        # Scripted torchvision detectors warn on every call that they return (losses,
        # detections) unless told they already have; forward below unpacks that itself.
        if hasattr(detector, "_has_warned"):
            detector._has_warned = True  # type: ignore[assignment]
        self.detector = detector

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        """Detect objects; normalisation happens inside the torchvision detector."""
        floats = [image.float() / 255.0 for image in images]
        if torch.jit.is_scripting():  # type: ignore[attr-defined]
            # Scripted torchvision detectors return (losses, detections) in every mode.
            _, detections = self.detector(floats)
            return detections  # type: ignore[no-any-return]
        result: list[dict[str, Tensor]] = self.detector(floats)
        return result


def mobilenet_v2_fpn(
    weights: str, config: DetectorConfig, p6p7: bool, finest_stride: int = 8
) -> BackboneWithFPN:
    """ImageNet MobileNetV2 features at strides 8 (or 16) to 32 with a feature pyramid on top."""
    if weights not in ("imagenet", "none"):
        raise ConfigError(f"--weights for a detector is imagenet or none, not {weights!r}")
    pretrained = MobileNet_V2_Weights.IMAGENET1K_V1 if weights == "imagenet" else None
    # Frozen batch norm: detection batches are too small to estimate statistics well.
    features = mobilenet_v2(weights=pretrained, norm_layer=misc_ops.FrozenBatchNorm2d).features
    frozen = len(features) - config.trainable_layers * 4 if config.trainable_layers < 5 else 1
    for index, layer in enumerate(features):
        layer.requires_grad_(index >= frozen)
    extra = LastLevelP6P7(config.fpn_channels, config.fpn_channels) if p6p7 else LastLevelMaxPool()
    layers = _LAYERS[0 if finest_stride == 8 else 1 :]
    return_layers = {index: str(level) for level, (index, _) in enumerate(layers)}
    in_channels = [channels for _, channels in layers]
    return BackboneWithFPN(
        features, return_layers, in_channels, config.fpn_channels, extra_blocks=extra
    )


def create_detector(config: DetectorConfig, weights: str = "imagenet") -> nn.Module:
    """A torchvision detector that resizes every image so its longer side is image_size."""
    common = {
        "min_size": config.image_size,
        "max_size": config.image_size,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
    }
    # FCOS and RetinaNet name their post-processing options alike (Faster R-CNN's differ).
    one_stage = common | {
        "score_thresh": config.score_threshold,
        "nms_thresh": config.nms_threshold,
        "detections_per_img": config.detections_per_image,
    }
    if config.arch == "fcos_mobilenet_v2":
        if config.fpn_channels % 32:
            raise ConfigError("fcos_mobilenet_v2 needs --fpn-channels divisible by 32 (GroupNorm)")
        backbone = mobilenet_v2_fpn(weights, config, p6p7=True)
        anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((1.0,),) * 5)
        detector = FCOS(backbone, config.num_classes, anchor_generator=anchors, **one_stage)
        return _typed(detector)
    if config.arch == "retinanet_mobilenet_v2":
        backbone = mobilenet_v2_fpn(weights, config, p6p7=True)
        sizes = tuple((s, int(s * 1.26), int(s * 1.59)) for s in (16, 32, 64, 128, 256))
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)
        detector = RetinaNet(backbone, config.num_classes, anchor_generator=anchors, **one_stage)
        return _typed(detector)
    if config.arch == "fasterrcnn_mobilenet_v2":
        # Stride 16 and up: the stride-8 level would double the cost for objects >= 20 px.
        backbone = mobilenet_v2_fpn(weights, config, p6p7=False, finest_stride=16)
        rcnn_sizes = ((20, 32), (48, 80), (128, 208))
        anchors = AnchorGenerator(rcnn_sizes, ((0.5, 1.0, 2.0),) * 3)
        # A 512-wide box head instead of 1024: half the RoI cost, plenty for a few classes.
        box_head = TwoMLPHead(config.fpn_channels * 7 * 7, _BOX_HEAD_WIDTH)
        detector = FasterRCNN(
            backbone,
            None,
            rpn_anchor_generator=anchors,
            box_head=box_head,
            box_predictor=FastRCNNPredictor(_BOX_HEAD_WIDTH, config.num_classes),
            rpn_pre_nms_top_n_test=300,
            rpn_post_nms_top_n_test=300,
            box_batch_size_per_image=64,
            box_score_thresh=config.score_threshold,
            box_nms_thresh=config.nms_threshold,
            box_detections_per_img=config.detections_per_image,
            **common,
        )
        return _typed(detector)
    raise ConfigError(f"unknown detector {config.arch!r}; one of {', '.join(DETECTOR_ARCHS)}")


def _typed(detector: nn.Module) -> nn.Module:
    """torchvision is untyped; name the type once here."""
    return detector


def trainable_parameters(model: nn.Module) -> OrderedDict[str, nn.Parameter]:
    """Parameters that get gradients (the frozen stem is left out)."""
    return OrderedDict((n, p) for n, p in model.named_parameters() if p.requires_grad)
