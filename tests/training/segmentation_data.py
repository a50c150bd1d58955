"""Tiny segmentation data for tests: mask folders and COCO files with known shapes."""

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from app.services.masks import mask_image

LABELS = ("background", "red thing", "blue thing")
RED, BLUE = (220, 30, 30), (30, 30, 220)


def shapes(index: int, size: tuple[int, int] = (80, 64)) -> tuple[Image.Image, np.ndarray]:
    """A noisy photo-like background with a red rectangle and a blue disc, and their mask."""
    width, height = size
    rng = np.random.default_rng(index)
    pixels = rng.integers(90, 170, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    mask = Image.new("L", size, 0)
    x, y = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
    box = (x, y, x + width // 3, y + height // 3)
    cx, cy = int(rng.integers(width // 2, width - 10)), int(rng.integers(height // 2, height - 10))
    disc = (cx - 9, cy - 9, cx + 9, cy + 9)
    for draw, value in ((ImageDraw.Draw(image), None), (ImageDraw.Draw(mask), 0)):
        draw.rectangle(box, fill=RED if value is None else 1)
        draw.ellipse(disc, fill=BLUE if value is None else 2)
    return image, np.asarray(mask)


def write_mask_folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (80, 64)) -> Path:
    """labels.txt and <split>/images + <split>/masks (or a flat folder for split "")."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_text("\n".join(LABELS) + "\n")
    offset = 0
    for split, count in counts.items():
        folder = root / split if split else root
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, mask = shapes(offset + index, size)
            image.save(folder / "images" / f"{split or 'img'}-{index:03d}.jpg", quality=95)
            mask_image(mask).save(folder / "masks" / f"{split or 'img'}-{index:03d}.png")
        offset += count
    return root


def write_coco_polygons(root: Path) -> Path:
    """One 40 x 30 image: a big square (category 7) with a small RLE square (category 3) on it."""
    (root / "annotations").mkdir(parents=True)
    (root / "train").mkdir()
    Image.new("RGB", (40, 30), (128, 128, 128)).save(root / "train" / "a.png")
    small = np.zeros((30, 40), dtype=np.uint8)
    small[10:15, 10:15] = 1
    counts: list[int] = []  # uncompressed column-major RLE of `small`
    flat = small.flatten(order="F")
    value, run = 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = int(pixel), 1
    counts.append(run)
    payload = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
        "categories": [{"id": 7, "name": "big"}, {"id": 3, "name": "small"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "area": 25, "iscrowd": 1,
             "segmentation": {"size": [30, 40], "counts": counts}},
            {"id": 2, "image_id": 1, "category_id": 7, "area": 400, "iscrowd": 0,
             "segmentation": [[5.0, 5.0, 25.0, 5.0, 25.0, 25.0, 5.0, 25.0]]},
        ],
    }  # fmt: skip
    (root / "annotations" / "instances_train.json").write_text(json.dumps(payload))
    return root
