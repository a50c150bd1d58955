"""Segmentation data: (image, class mask) pairs from a mask folder or COCO instances.

A mask folder (what annotation tools export as "segmentation masks"):

    DIR/labels.txt                 one class name per line; line 1 is class id 0 (background)
    DIR/<split>/images/NAME.jpg    splits train, val and optionally test ...
    DIR/<split>/masks/NAME.png     ... single-channel PNG of class ids, same name, same size
    (or DIR/images + DIR/masks without splits: val and test are drawn with the run's seed)

Mask value 255 means "ignore" (unlabelled or ambiguous pixels), as in PASCAL VOC. COCO data
(`annotations/instances_<split>.json` + `<split>/`) has its polygons and RLE rasterised with
faster-coco-eval's port of pycocotools' mask API; category ids in ascending order become class
ids 1..K. Images are read upright (EXIF applied), as annotation tools show them and as /segment
answers.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from faster_coco_eval.core import mask as coco_mask
from PIL import Image

from app.imaging import decode_image
from training.core.datacheck import IMAGE_EXTENSIONS, TRAINING_LIMITS, DatasetError

BACKGROUND = "background"
LABELS_FILE = "labels.txt"
IMAGES = "images"
MASKS = "masks"
IGNORE_INDEX = 255
SPLITS = ("train", "val", "test")

MaskLoader = Callable[[int], np.ndarray]


@dataclass(frozen=True, kw_only=True)
class SegmentationSplit:
    """One split: its image files, how to read image i's mask, and the class names."""

    name: str
    images: tuple[Path, ...]
    labels: tuple[str, ...]
    mask_loader: MaskLoader
    mask_names: tuple[str, ...]  # the mask's file (or COCO image id), for messages

    def __len__(self) -> int:
        return len(self.images)

    def image(self, index: int, draft: int | None = None) -> Image.Image:
        """Image `index`, upright RGB; `draft`: let libjpeg scale it down as the service does."""
        return decode_image(self.images[index].read_bytes(), TRAINING_LIMITS, draft).image

    def mask(self, index: int) -> np.ndarray:
        """Mask `index`: uint8 class ids [H, W] (255 = ignore)."""
        return self.mask_loader(index)

    def subset(self, indices: Sequence[int], name: str | None = None) -> "SegmentationSplit":
        """The listed images only (the check's survivors, a seeded split, --max-images)."""
        chosen = list(indices)
        loader = self.mask_loader
        return SegmentationSplit(
            name=name or self.name,
            images=tuple(self.images[i] for i in chosen),
            labels=self.labels,
            mask_loader=lambda index: loader(chosen[index]),
            mask_names=tuple(self.mask_names[i] for i in chosen),
        )


def is_mask_folder(path: Path) -> bool:
    """Whether `path` looks like a mask folder (labels.txt beside images/masks folders)."""
    return (path / LABELS_FILE).is_file()


def is_coco_segmentation(path: Path) -> bool:
    """Whether `path` holds COCO instance annotations."""
    return any((path / "annotations").glob("instances_*.json"))


def read_labels(path: Path) -> tuple[str, ...]:
    """Class names from labels.txt (blank lines and surrounding spaces dropped)."""
    labels = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if len(labels) < 2:
        raise DatasetError(f"{path}: needs the background and at least one class, one per line")
    if len(set(labels)) != len(labels):
        raise DatasetError(f"{path}: class names repeat")
    return labels


def read_mask_file(path: Path) -> np.ndarray:
    """A PNG of class ids as uint8 [H, W]; colour masks are refused with the reason."""
    with Image.open(path) as image:
        if image.mode in ("P", "L"):
            return np.asarray(image, dtype=np.uint8).copy()
        if image.mode in ("I", "I;16", "I;16B", "I;16L"):
            values = np.asarray(image)
            if values.max(initial=0) > IGNORE_INDEX:
                raise DatasetError(f"{path}: class ids above {IGNORE_INDEX}")
            return values.astype(np.uint8)
        raise DatasetError(
            f"{path}: a mask must be single-channel class ids (PNG mode L or P), not {image.mode}"
        )


def load_mask_folder(root: Path) -> dict[str, SegmentationSplit]:
    """The splits of a mask folder (a flat folder comes back as one split called `all`)."""
    labels = read_labels(root / LABELS_FILE)
    found = {split: root / split for split in SPLITS if (root / split / IMAGES).is_dir()}
    if not found and (root / IMAGES).is_dir():
        found = {"all": root}
    if not found:
        raise DatasetError(
            f"{root}: no images/ folder (expected {root}/train/images and {root}/val/images, "
            f"or {root}/images), each with a masks/ folder beside it"
        )
    return {name: _folder_split(name, folder, labels) for name, folder in found.items()}


def _folder_split(name: str, folder: Path, labels: tuple[str, ...]) -> SegmentationSplit:
    images = tuple(
        sorted(p for p in (folder / IMAGES).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    )
    masks = tuple(folder / MASKS / f"{path.stem}.png" for path in images)
    return SegmentationSplit(
        name=name,
        images=images,
        labels=labels,
        mask_loader=lambda index: read_mask_file(masks[index]),
        mask_names=tuple(str(path) for path in masks),
    )


def load_coco_segmentation(root: Path) -> dict[str, SegmentationSplit]:
    """COCO splits with masks rasterised from each image's polygons and RLE."""
    files = {
        path.stem.removeprefix("instances_"): path
        for path in sorted((root / "annotations").glob("instances_*.json"))
    }
    payloads = {split: json.loads(path.read_text()) for split, path in files.items()}
    categories = sorted(
        {int(c["id"]): str(c["name"]) for p in payloads.values() for c in p["categories"]}.items()
    )
    labels = (BACKGROUND, *(name for _, name in categories))
    class_of = {category: index for index, (category, _) in enumerate(categories, start=1)}
    return {
        split: _coco_split(split, root, payload, labels, class_of)
        for split, payload in payloads.items()
    }


def _coco_split(
    split: str,
    root: Path,
    payload: dict[str, Any],
    labels: tuple[str, ...],
    class_of: dict[int, int],
) -> SegmentationSplit:
    by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in payload.get("annotations", []):
        by_image.setdefault(int(annotation["image_id"]), []).append(annotation)
    entries = payload["images"]
    folder = root / split if (root / split).is_dir() else root

    def load(index: int) -> np.ndarray:
        entry = entries[index]
        rows = by_image.get(int(entry["id"]), [])
        return rasterize(rows, int(entry["height"]), int(entry["width"]), class_of)

    return SegmentationSplit(
        name=split,
        images=tuple(folder / str(entry["file_name"]) for entry in entries),
        labels=labels,
        mask_loader=load,
        mask_names=tuple(f"{split} image id {entry['id']}" for entry in entries),
    )


def rasterize(
    annotations: Sequence[dict[str, Any]], height: int, width: int, class_of: dict[int, int]
) -> np.ndarray:
    """One class map from COCO annotations; smaller objects are painted over larger ones.

    A category not in `class_of` paints 255 (ignore): the dataset check reports it.
    """
    mask = np.zeros((height, width), dtype=np.uint8)
    shapes = [a for a in annotations if a.get("segmentation")]
    for annotation in sorted(shapes, key=lambda a: -float(a.get("area", 0.0))):
        segmentation = annotation["segmentation"]
        if isinstance(segmentation, list):  # polygons
            rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation["counts"], list):  # uncompressed RLE
            rle = coco_mask.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        pixels = coco_mask.decode(rle).astype(bool)
        mask[pixels] = class_of.get(int(annotation["category_id"]), IGNORE_INDEX)
    return mask


def mask_tensor(mask: np.ndarray) -> torch.Tensor:
    """A uint8 class map as the int64 target cross-entropy takes."""
    return torch.from_numpy(mask.astype(np.int64))
