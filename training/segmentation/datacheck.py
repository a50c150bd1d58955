"""The segmentation dataset check: every image with its mask, before any training.

Left out and listed: unreadable images, missing or unreadable masks, masks whose size is not
the upright image's, masks with class ids the labels do not have. Counted and kept: masks with
no object pixels (real negatives). The report also counts pixels and images per class.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from training.core.datacheck import DatasetError
from training.segmentation.data import IGNORE_INDEX, SegmentationSplit

logger = logging.getLogger(__name__)

_EXAMPLES = 10


@dataclass(frozen=True, kw_only=True)
class PairCheck:
    """One image and mask: the problem that leaves it out (None = usable), and pixel counts."""

    problem: str | None
    kind: str  # "ok", "unreadable", "missing_mask", "size_mismatch", "unknown_ids"
    counts: np.ndarray | None = None  # pixels per class id (length = labels)


@dataclass(kw_only=True)
class SegmentationReport:
    """What the check found, per split, and what it left out."""

    labels: tuple[str, ...]
    images: dict[str, int] = field(default_factory=dict)
    pixels: dict[str, dict[str, int]] = field(default_factory=dict)
    images_with: dict[str, dict[str, int]] = field(default_factory=dict)
    empty_masks: dict[str, int] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)  # kind -> messages

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as dataset.json in the run folder."""
        return {
            "labels": list(self.labels),
            "images": self.images,
            "pixels": self.pixels,
            "images_with_class": self.images_with,
            "empty_masks": self.empty_masks,
            "left_out": {kind: len(items) for kind, items in self.problems.items()},
            "examples": {kind: items[:_EXAMPLES] for kind, items in self.problems.items()},
        }


def check_pair(split: SegmentationSplit, index: int) -> PairCheck:
    """Read image `index`'s upright size and its mask, and say whether they can be used."""
    path = split.images[index]
    try:
        with Image.open(path) as image:
            width, height = ImageOps.exif_transpose(image).size
    except Exception as error:  # Pillow raises many types on bad files
        return PairCheck(problem=f"{path}: unreadable image ({error})", kind="unreadable")
    try:
        mask = split.mask(index)
    except FileNotFoundError:
        return PairCheck(problem=f"{split.mask_names[index]}: no mask", kind="missing_mask")
    except Exception as error:  # a DatasetError, or Pillow's on a corrupt PNG
        return PairCheck(problem=f"{split.mask_names[index]}: {error}", kind="missing_mask")
    if mask.shape != (height, width):
        return PairCheck(
            problem=f"{split.mask_names[index]}: mask is {mask.shape[1]}x{mask.shape[0]}, "
            f"the upright image {path.name} is {width}x{height}",
            kind="size_mismatch",
        )
    counts = np.bincount(mask.ravel(), minlength=256)
    extra = np.flatnonzero(counts[len(split.labels) :]) + len(split.labels)
    unknown = [int(value) for value in extra if value != IGNORE_INDEX]
    if unknown:
        return PairCheck(
            problem=f"{split.mask_names[index]}: class ids {unknown} are not in the "
            f"{len(split.labels)} labels (0-{len(split.labels) - 1}; 255 = ignore)",
            kind="unknown_ids",
        )
    return PairCheck(problem=None, kind="ok", counts=counts[: len(split.labels)])


def check_splits(
    splits: dict[str, SegmentationSplit], workers: int = 4
) -> tuple[dict[str, SegmentationSplit], SegmentationReport]:
    """The usable part of every split, and the report; refuses data that cannot train."""
    labels = next(iter(splits.values())).labels
    report = SegmentationReport(labels=labels)
    usable: dict[str, SegmentationSplit] = {}
    for name, split in splits.items():
        with ThreadPoolExecutor(max(1, workers)) as pool:
            checks = list(pool.map(lambda i, s=split: check_pair(s, i), range(len(split))))
        keep = [i for i, check in enumerate(checks) if check.problem is None]
        for check in checks:
            if check.problem is not None:
                report.problems.setdefault(check.kind, []).append(check.problem)
        totals = np.zeros(len(labels), dtype=np.int64)
        present = np.zeros(len(labels), dtype=np.int64)
        empty = 0
        for i in keep:
            counts = checks[i].counts
            assert counts is not None
            totals += counts
            present += counts > 0
            empty += int(counts[1:].sum() == 0)
        report.images[name] = len(keep)
        report.pixels[name] = {label: int(n) for label, n in zip(labels, totals, strict=True)}
        report.images_with[name] = {label: int(n) for label, n in zip(labels, present, strict=True)}
        report.empty_masks[name] = empty
        usable[name] = split.subset(keep)
    validate(report)
    return usable, report


def validate(report: SegmentationReport) -> None:
    """Refuse data a run cannot learn from, saying what to fix."""
    for split, count in report.images.items():
        if count == 0:
            kinds = ", ".join(f"{len(v)} {k}" for k, v in report.problems.items()) or "no images"
            raise DatasetError(f"split {split!r} has no usable image with a mask ({kinds})")
    train = report.pixels.get("train") or report.pixels.get("all") or {}
    if train and sum(list(train.values())[1:]) == 0:
        raise DatasetError("the training masks hold no object pixels: every pixel is background")


def format_report(report: SegmentationReport) -> str:
    """The report as the log and `check` print it."""
    lines = [f"segmentation data: {len(report.labels)} classes (background included)"]
    for split, count in report.images.items():
        lines.append(f"  {split}: {count} images, {report.empty_masks[split]} with no object")
        total = max(1, sum(report.pixels[split].values()))
        for label, pixels in report.pixels[split].items():
            images = report.images_with[split][label]
            lines.append(f"    {label:<16} {pixels / total:7.2%} of pixels, in {images} images")
    for kind, items in report.problems.items():
        lines.append(f"  left out, {kind}: {len(items)}")
        lines += [f"    {item}" for item in items[:_EXAMPLES]]
    return "\n".join(lines)
