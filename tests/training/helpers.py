"""Helpers for training tests: Fashion-MNIST image folders, tiny COCO folders, quick configs."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from training.classification.config import TrainConfig
from training.classification.fashion_mnist import (
    FASHION_MNIST_DIR,
    FASHION_MNIST_FILES,
    read_fashion_mnist,
)

# Three easy and one harder class: a few epochs on 40 images each already learn something.
FOLDER_CLASSES = {"trouser": 1, "sandal": 5, "bag": 8, "shirt": 6}
FASHION_MNIST_MISSING = (
    "dataset-fashion-mnist is not installed (`make data`, or "
    "`apt-get install -y dataset-fashion-mnist`)"
)


def fashion_mnist_installed() -> bool:
    """Whether the Debian package's files are present."""
    return all(
        (FASHION_MNIST_DIR / name).is_file()
        for pair in FASHION_MNIST_FILES.values()
        for name in pair
    )


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


# Category ids need not be 1..N: the loader maps them in sorted order.
CATEGORIES = [{"id": 5, "name": "red thing"}, {"id": 9, "name": "blue thing"}]
COLOURS = {5: (220, 20, 20), 9: (20, 40, 220)}


def write_coco(root: Path, split: str, count: int, size: tuple[int, int] = (120, 90)) -> None:
    """Grey images with one red and (every other image) one blue rectangle, as COCO JSON."""
    (root / split).mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    generator = torch.Generator().manual_seed(count)
    width, height = size
    for index in range(count):
        image = Image.new("RGB", size, (128, 128, 128))
        draw = ImageDraw.Draw(image)
        for category in (5, 9)[: 1 + index % 2]:
            x, y = (int(v) for v in torch.randint(0, width // 2, (2,), generator=generator))
            w, h = width // 4 + index % 7, height // 4 + index % 5
            y = min(y, height - h - 1)
            draw.rectangle((x, y, x + w - 1, y + h - 1), fill=COLOURS[category])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 10,
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        image.save(root / split / f"{index}.png")
        images.append(
            {"id": index + 10, "file_name": f"{index}.png", "width": width, "height": height}
        )
    (root / "annotations").mkdir(exist_ok=True)
    payload = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(payload))
