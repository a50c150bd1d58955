"""Helpers for training tests: real image folders cut from Fashion-MNIST, quick configs."""

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from training.config import TrainConfig
from training.fashion_mnist import FASHION_MNIST_DIR, FASHION_MNIST_FILES, read_fashion_mnist

# Three easy and one harder class: a few epochs on 40 images each already learn something.
FOLDER_CLASSES = {"trouser": 1, "sandal": 5, "bag": 8, "shirt": 6}
FASHION_MNIST_MISSING = (
    "dataset-fashion-mnist is not installed (`make data`, or "
    "`apt-get install -y dataset-fashion-mnist`)"
)


def fashion_mnist_installed() -> bool:
    """Whether the Debian package's files are present."""
    return all((FASHION_MNIST_DIR / name).is_file() for pair in FASHION_MNIST_FILES.values()
               for name in pair)  # fmt: skip


needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_installed(), reason=FASHION_MNIST_MISSING
)


def write_folder(root: Path, split: str, per_class: int, offset: int = 0) -> None:
    """Write `per_class` real Fashion-MNIST images of each FOLDER_CLASSES class as PNG files."""
    pixels, labels = read_fashion_mnist(split)
    for name, label in FOLDER_CLASSES.items():
        directory = root / name
        directory.mkdir(parents=True, exist_ok=True)
        chosen = np.flatnonzero(labels == label)[offset : offset + per_class]
        for index in chosen:
            Image.fromarray(pixels[index]).save(directory / f"{split}-{index:05d}.png")


def quick_config(data: Path | str, tmp_path: Path, **changes: Any) -> TrainConfig:
    """A few seconds of training: small batches, no workers, no progress bars."""
    config = TrainConfig(
        data=str(data),
        name="quick",
        runs=tmp_path / "runs",
        store=tmp_path / "models",
        epochs=3,
        image_size=24,
        batch_size=16,
        lr=3e-3,
        warmup_epochs=0.5,
        workers=0,
        progress=False,
    )
    return dataclasses.replace(config, **changes)
