"""Labelled image sources: files on disk or arrays in memory, and the Dataset that presets them."""

import hashlib
import io
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from app.imaging import decode_image
from training.core.datacheck import TRAINING_LIMITS

logger = logging.getLogger(__name__)


class LabeledImages(ABC):
    """A sequence of images with class indices, readable as encoded bytes or decoded pixels."""

    targets: list[int]

    def __len__(self) -> int:
        return len(self.targets)

    @abstractmethod
    def read_bytes(self, index: int) -> bytes:
        """The image as a file, i.e. what a client would upload to the service."""

    @abstractmethod
    def load(self, index: int, draft_size: int | None = None) -> Image.Image:
        """The decoded, upright image (RGB, or L for grey data sets)."""

    @abstractmethod
    def digest(self, index: int) -> str:
        """Hash of the content, for duplicate detection."""

    @abstractmethod
    def describe(self, index: int) -> str:
        """A path or id a person can find the image by."""

    @abstractmethod
    def select(self, indices: Sequence[int]) -> "LabeledImages":
        """The images at `indices`, in that order."""


class FileImages(LabeledImages):
    """Image files on disk, decoded with the service's own decoder."""

    def __init__(
        self, paths: Sequence[Path], targets: Sequence[int], digests: Sequence[str]
    ) -> None:
        self.paths = list(paths)
        self.targets = list(targets)
        self.digests = list(digests)

    def read_bytes(self, index: int) -> bytes:
        """The file's bytes."""
        return self.paths[index].read_bytes()

    def load(self, index: int, draft_size: int | None = None) -> Image.Image:
        """Decode as the service does (EXIF orientation, RGB, JPEG draft when asked)."""
        return decode_image(self.read_bytes(index), TRAINING_LIMITS, draft_size).image

    def digest(self, index: int) -> str:
        """sha1 of the file."""
        return self.digests[index]

    def describe(self, index: int) -> str:
        """The path."""
        return str(self.paths[index])

    def select(self, indices: Sequence[int]) -> "FileImages":
        """A subset."""
        return FileImages(
            [self.paths[i] for i in indices],
            [self.targets[i] for i in indices],
            [self.digests[i] for i in indices],
        )


class ArrayImages(LabeledImages):
    """Images held in one uint8 array (N, H, W) or (N, H, W, 3), e.g. a built-in data set."""

    def __init__(
        self, pixels: np.ndarray, targets: Sequence[int], name: str, ids: np.ndarray
    ) -> None:
        self.pixels = pixels
        self.targets = list(targets)
        self.name = name
        self.ids = ids

    def read_bytes(self, index: int) -> bytes:
        """A lossless PNG of the image."""
        buffer = io.BytesIO()
        self.load(index).save(buffer, format="PNG")
        return buffer.getvalue()

    def load(self, index: int, draft_size: int | None = None) -> Image.Image:
        """The pixels as a PIL image."""
        return Image.fromarray(self.pixels[index])

    def digest(self, index: int) -> str:
        """sha1 of the pixels."""
        return hashlib.sha1(self.pixels[index].tobytes()).hexdigest()

    def describe(self, index: int) -> str:
        """`name#i`, with i the index in the original file."""
        return f"{self.name}#{self.ids[index]}"

    def select(self, indices: Sequence[int]) -> "ArrayImages":
        """A subset (a view-free copy, so workers share nothing mutable)."""
        chosen = np.asarray(indices, dtype=np.int64)
        targets = [self.targets[i] for i in indices]
        return ArrayImages(self.pixels[chosen], targets, self.name, self.ids[chosen])


class ImageDataset(Dataset[tuple[torch.Tensor, int, int]]):
    """(transformed image, class index, position) for a DataLoader."""

    def __init__(
        self,
        images: LabeledImages,
        transform: Callable[[Image.Image], torch.Tensor],
        draft_size: int | None = None,
    ) -> None:
        self.images = images
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image = self.images.load(index, self.draft_size)
        return self.transform(image), self.images.targets[index], index
