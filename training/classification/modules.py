"""Scriptable wrappers that put input conversion inside the exported model."""

import copy

import torch
from torch import nn

from app.runtime.card import ClassifierOutput


class NormalizedClassifier(nn.Module):
    """uint8 NCHW in [0, 255] -> logits; casting and mean/std live here, so serving cannot err."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(
        self, backbone: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> None:
        super().__init__()
        self.backbone = backbone
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        # (x / 255 - mean) / std folded into one multiply-add.
        self.register_buffer("scale", 1.0 / (255.0 * std_t))
        self.register_buffer("shift", -mean_t / std_t)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Classify a batch of uint8 images."""
        pixels = images.float() * self.scale + self.shift
        logits: torch.Tensor = self.backbone(pixels)
        return logits


class EmbeddingClassifier(nn.Module):
    """uint8 NCHW -> (logits, L2-normalised pooled penultimate features).

    Built from a trained NormalizedClassifier at export: the head (the last linear layer) is
    taken out of the backbone, so the features it reads come back as the embedding that the
    open-set score and reference galleries use. The logits are the classifier's, unchanged.
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, classifier: NormalizedClassifier, head: str) -> None:
        super().__init__()
        features = copy.deepcopy(classifier.backbone)
        linear = features.get_submodule(head)
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"the head {head!r} is a {type(linear).__name__}, not nn.Linear")
        features.set_submodule(head, nn.Identity())
        self.features = features
        self.head = linear
        self.register_buffer("scale", classifier.scale.clone())
        self.register_buffer("shift", classifier.shift.clone())

    @property
    def embedding_dim(self) -> int:
        """Length of the embedding."""
        return self.head.in_features

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and embeddings for a batch of uint8 images."""
        pixels = images.float() * self.scale + self.shift
        pooled: torch.Tensor = self.features(pixels)
        logits: torch.Tensor = self.head(pooled)
        return logits, nn.functional.normalize(pooled, dim=1)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a projection shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual unit."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallCNN(nn.Module):
    """A compact ResNet for tiny images (28-64 px): stem, stages that halve the size, linear head.

    torchvision's ImageNet models shrink a 28 px image to 1 px before their last stage; this one
    keeps full resolution in the first stage and ends at 1/4 of the input side.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: tuple[int, ...] = (32, 64, 128),
        depths: tuple[int, ...] = (1, 1, 1),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        previous = widths[0]
        for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            for block in range(depth):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(ResidualBlock(previous, width, stride))
                previous = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of normalised images."""
        features = torch.flatten(self.pool(self.features(x)), 1)
        logits: torch.Tensor = self.fc(self.dropout(features))
        return logits


class ExplainingClassifier(nn.Module):
    """uint8 NCHW -> (logits, embedding, embedding_map, class_map): the card's full outputs.

    For a network whose head is global average pooling then one linear layer, split at the
    pooling: the trunk's feature map F [N, D, h, w] gives the pooled features (their mean), the
    logits (the head on them) and the embedding (them, L2-normalised), exactly as
    EmbeddingClassifier does, plus two maps TorchScript callers cannot get with hooks:
    `embedding_map` = F / (h w |pooled|), whose sum over the cells is the embedding, and
    `class_map` = W[top class] . F, the class activation map of each image's top class (for such
    a head, Grad-CAM's weights are W / (h w): the same map up to a positive factor).
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(
        self, trunk: nn.Module, head: nn.Linear, scale: torch.Tensor, shift: torch.Tensor
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.register_buffer("scale", scale.clone())
        self.register_buffer("shift", shift.clone())

    @property
    def embedding_dim(self) -> int:
        """Length of the embedding."""
        return self.head.in_features

    def forward(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits, embeddings and both activation maps for a batch of uint8 images."""
        pixels = images.float() * self.scale + self.shift
        maps: torch.Tensor = self.trunk(pixels)
        pooled = maps.mean(dim=(2, 3))
        logits: torch.Tensor = self.head(pooled)
        length = pooled.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12)  # as F.normalize
        cells = maps.shape[2] * maps.shape[3]
        embedding_map = maps / (length[:, :, None, None] * cells)
        top_weights = self.head.weight[logits.argmax(dim=1)]  # [N, D]
        class_map = torch.einsum("ndhw,nd->nhw", maps, top_weights)
        return logits, pooled / length, embedding_map, class_map


def explaining(classifier: NormalizedClassifier) -> ExplainingClassifier | None:
    """The explaining form of a classifier whose head is pooling + one linear layer, else None.

    Known layouts: a `features` trunk followed by pooling and either `fc` (SmallCNN) or a
    `classifier` of dropout and one linear layer (MobileNetV2, EfficientNet).
    """
    backbone = classifier.backbone
    trunk = getattr(backbone, "features", None)
    head = getattr(backbone, "fc", None)
    if head is None:
        layers = list(getattr(backbone, "classifier", []))
        linear = [layer for layer in layers if isinstance(layer, nn.Linear)]
        others = [layer for layer in layers if not isinstance(layer, nn.Linear | nn.Dropout)]
        head = linear[0] if len(linear) == 1 and not others else None
    if not isinstance(trunk, nn.Module) or not isinstance(head, nn.Linear):
        return None
    return ExplainingClassifier(
        copy.deepcopy(trunk), copy.deepcopy(head), classifier.scale, classifier.shift
    ).eval()


ExportedClassifier = EmbeddingClassifier | ExplainingClassifier


def exported_classifier(classifier: NormalizedClassifier, head: str) -> ExportedClassifier:
    """What a classifier is exported as: with activation maps where its head allows them."""
    return explaining(classifier) or EmbeddingClassifier(classifier, head).eval()


def outputs_of(module: ExportedClassifier) -> tuple[ClassifierOutput, ...]:
    """The card's `outputs` for an exported classifier."""
    if isinstance(module, ExplainingClassifier):
        return ("logits", "embedding", "embedding_map", "class_map")
    return ("logits", "embedding")
