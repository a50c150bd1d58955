"""COCO annotations cleaned for training: usable images, finite boxes clipped, what was dropped."""

import dataclasses
import logging
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.core.datacheck import (
    _EXAMPLES,
    InspectedFile,
    inspect_files,
)
from training.detection.data import CocoSplit

logger = logging.getLogger(__name__)


@dataclass
class Findings:
    """Problems gathered while cleaning the splits."""

    unreadable: list[tuple[str, str]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_examples: list[str] = field(default_factory=list)
    clipped: int = 0
    resized: list[str] = field(default_factory=list)


def clean_splits(
    raw: Mapping[str, CocoSplit], workers: int
) -> tuple[dict[str, CocoSplit], dict[Path, InspectedFile], Findings]:
    """Decode each image file once (shared between splits), then clean every split."""
    paths = list(dict.fromkeys(path for split in raw.values() for path in _image_paths(split)))
    files = inspect_files(paths, workers)
    findings = Findings()
    splits = {name: _clean_split(split, files, findings) for name, split in raw.items()}
    return splits, files, findings


def _image_paths(split: CocoSplit) -> list[Path]:
    return [split.path(i) for i in range(len(split.images)) if _has_file(split.images[i])]


def _has_file(entry: dict[str, Any]) -> bool:
    return "id" in entry and bool(entry.get("file_name"))


def _clean_split(
    split: CocoSplit, files: Mapping[Path, InspectedFile], findings: Findings
) -> CocoSplit:
    """The split without unusable images, and with only valid (clipped) annotations."""
    kept_images, sizes = _usable_images(split, files, findings)
    left_out = {entry.get("id") for entry in split.images} - sizes.keys()
    kept_annotations = []
    for annotation in split.coco.get("annotations", []):
        if annotation.get("image_id") in left_out:
            continue  # its image was left out (and listed); the annotation goes with it
        checked = _check_annotation(annotation, sizes, split, findings)
        if checked is not None:
            kept_annotations.append(checked)
    coco = {**split.coco, "images": kept_images, "annotations": kept_annotations}
    coco.pop("_by_image", None)  # CocoSplit's lookup cache, rebuilt from the cleaned list
    return dataclasses.replace(split, coco=coco)


def _usable_images(
    split: CocoSplit, files: Mapping[Path, InspectedFile], findings: Findings
) -> tuple[list[dict[str, Any]], dict[int, tuple[int, int]]]:
    """The image entries whose file decodes, and each one's upright (width, height)."""
    kept: list[dict[str, Any]] = []
    sizes: dict[int, tuple[int, int]] = {}
    for index, entry in enumerate(split.images):
        if not _has_file(entry):
            where = f"{split.annotation_file} images[{index}]"
            findings.unreadable.append((where, "entry has no id or file_name"))
            continue
        found = files[split.path(index)]
        if found.problem is not None:
            findings.unreadable.append((str(split.path(index)), found.problem))
            continue
        if (entry.get("width"), entry.get("height")) != (found.width, found.height):
            findings.resized.append(str(split.path(index)))
        sizes[entry["id"]] = (found.width, found.height)
        kept.append(entry)
    return kept, sizes


def _check_annotation(
    annotation: dict[str, Any],
    sizes: Mapping[int, tuple[int, int]],
    split: CocoSplit,
    findings: Findings,
) -> dict[str, Any] | None:
    """The annotation with its box clipped to the image, or None (counted) when unusable."""
    image_id = annotation.get("image_id")
    image_size = sizes.get(image_id) if isinstance(image_id, int) else None
    box = _finite_box(annotation.get("bbox"))
    if image_size is None:
        reason = "unknown image_id"
    elif annotation.get("category_id") not in split.category_to_label:
        reason = "unknown category_id"
    elif box is None:
        reason = "malformed or non-finite bbox"
    else:
        clipped = _clip(box, image_size)
        if clipped == box and box[2] > 0 and box[3] > 0:
            return annotation
        if clipped[2] > 0 and clipped[3] > 0:
            findings.clipped += 1
            return {**annotation, "bbox": clipped}
        reason = "degenerate box (no width or height inside the image)"
    findings.dropped[reason] += 1
    if len(findings.dropped_examples) < _EXAMPLES:
        findings.dropped_examples.append(
            f"{split.name}: annotation {annotation.get('id')} on image "
            f"{annotation.get('image_id')}: {reason}, bbox {annotation.get('bbox')}"
        )
    return None


def _finite_box(value: object) -> list[float] | None:
    """[x, y, w, h] as floats, or None unless it is four finite numbers."""
    if not isinstance(value, list) or len(value) != 4:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return None
    box = [float(v) for v in value]
    return box if all(math.isfinite(v) for v in box) else None


def _clip(box: list[float], size: tuple[int, int]) -> list[float]:
    """Clip an xywh box to a width x height image; the result may have no area."""
    x, y, w, h = box
    left, top = min(max(x, 0.0), size[0]), min(max(y, 0.0), size[1])
    right, bottom = min(max(x + w, 0.0), size[0]), min(max(y + h, 0.0), size[1])
    return [left, top, right - left, bottom - top]
