"""(image, mask) pairs as tensors: augmented squares for training, served inputs for evaluation.

Training sees what serving sends, the whole image stretched to the card's square, or (70% of
the time) a random zoomed crop stretched the same way; transforms v2 move the mask with the
image (`tv_tensors.Mask` is resized with nearest neighbours, never blended).
"""

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from app.runtime.card import InputSpec
from app.runtime.preprocessing import draft_size, preprocess_image
from training.segmentation.data import SegmentationSplit, mask_tensor

Pair = tuple[torch.Tensor, torch.Tensor]


def train_transform(size: int) -> v2.Transform:
    """Zoom/crop, flip and colour jitter, ending in a size x size square."""
    return v2.Compose(
        [
            v2.RandomApply(
                [v2.RandomResizedCrop((size, size), scale=(0.25, 1.0), ratio=(0.5, 2.0))], p=0.7
            ),
            v2.Resize((size, size)),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
        ]
    )


class TrainPairs(Dataset[Pair]):
    """Augmented uint8 [3, S, S] images with int64 [S, S] masks."""

    def __init__(self, split: SegmentationSplit, size: int) -> None:
        self.split = split
        self.transform = train_transform(size)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Pair:
        image = tv_tensors.Image(F.pil_to_tensor(self.split.image(index)))
        mask = tv_tensors.Mask(torch.from_numpy(self.split.mask(index)))
        image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()


class ServedPairs(Dataset[Pair]):
    """What the service would feed the model (the card's preprocessing), and the full mask."""

    def __init__(self, split: SegmentationSplit, spec: InputSpec) -> None:
        self.split = split
        self.spec = spec

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Pair:
        # Decoded as the service decodes (JPEG draft scaling included), so validation and test
        # scores are the served model's.
        pixels = preprocess_image(self.split.image(index, draft_size(self.spec)), self.spec)
        return pixels, mask_tensor(self.split.mask(index))


def collate_train(batch: list[Pair]) -> Pair:
    """Stack images and masks (all the same square)."""
    images, masks = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(masks)


def collate_served(batch: list[Pair]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Stack the model inputs; masks keep their own sizes."""
    images, masks = zip(*batch, strict=True)
    return torch.stack(images), list(masks)
