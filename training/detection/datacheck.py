"""The detection dataset check: unreadable images, bad boxes, instances per category, duplicates.

It runs before a detector trains and in `python -m training check`. A missing or corrupt image
is listed and left out instead of crashing an epoch halfway through; an annotation that points
at nothing or boxes nothing is dropped and counted instead of reaching the loss.
"""

import dataclasses
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.core.datacheck import (
    DatasetError,
    Duplicates,
    duplicate_lines,
    find_duplicates,
    unreadable_lines,
)
from training.detection.annotations import clean_splits
from training.detection.data import CocoSplit, annotation_file, load_split

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_EXAMPLES = 10


@dataclass(frozen=True)
class SplitCounts:
    """One split after the check: usable images, those with no object, instances per category."""

    images: int
    empty_images: int
    instances: list[int]
    unreadable: int = 0


@dataclass(frozen=True)
class DetectionReport:
    """What the check found, for the log, the run folder's dataset.json and the console."""

    source: str
    categories: tuple[str, ...]
    counts: dict[str, SplitCounts]
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> annotations dropped
    dropped_examples: list[str] = field(default_factory=list)
    clipped: int = 0
    resized: list[str] = field(default_factory=list)
    duplicates: Duplicates = field(default_factory=Duplicates)

    @property
    def imbalance(self) -> float:
        """Largest over smallest category in train (inf when a category has no instance)."""
        train = self.counts["train"].instances
        return max(train) / min(train) if min(train) else float("inf")

    @property
    def untrained_categories(self) -> list[str]:
        """Categories with no training instance: the detector cannot learn them."""
        train = self.counts["train"].instances
        return [name for name, count in zip(self.categories, train, strict=True) if count == 0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "source": self.source,
            "categories": list(self.categories),
            "counts": {split: dataclasses.asdict(counts) for split, counts in self.counts.items()},
            "imbalance": self.imbalance,
            "untrained_categories": self.untrained_categories,
            "unreadable": [list(item) for item in self.unreadable],
            "dropped_annotations": self.dropped,
            "dropped_examples": self.dropped_examples,
            "clipped_boxes": self.clipped,
            "size_mismatches": self.resized,
            "duplicates": dataclasses.asdict(self.duplicates),
        }


@dataclass(frozen=True)
class CheckedDetectionData:
    """The splits as training reads them (bad images and annotations removed) and the report."""

    splits: dict[str, CocoSplit]
    report: DetectionReport


def check_detection_data(root: Path, workers: int = 4) -> CheckedDetectionData:
    """Decode every image of every split once, drop what training cannot use, and count."""
    raw = {name: load_split(root, name) for name in SPLITS if annotation_file(root, name)}
    if "train" not in raw:
        raise DatasetError(
            f"{root}: no training annotations; add annotations/instances_train.json "
            "(COCO format) with the images under train/"
        )
    _require_same_categories(raw)
    splits, files, findings = clean_splits(raw, workers)
    counts = {name: _count(split, len(raw[name].images)) for name, split in splits.items()}
    duplicates = find_duplicates(
        {
            name: [files[split.path(i)].digest for i in range(len(split.images))]
            for name, split in splits.items()
        },
        lambda name, index: str(splits[name].path(index)),
    )
    report = DetectionReport(
        str(root),
        raw["train"].labels[1:],
        counts,
        findings.unreadable,
        dict(findings.dropped),
        findings.dropped_examples,
        findings.clipped,
        findings.resized,
        duplicates,
    )
    return CheckedDetectionData(splits, report)


def checked_split(root: Path, name: str, workers: int = 4) -> CocoSplit:
    """One split, cleaned like training's (for evaluation): what was left out is logged."""
    cleaned_splits, _, findings = clean_splits({name: load_split(root, name)}, workers)
    cleaned = cleaned_splits[name]
    if findings.unreadable or findings.dropped:
        dropped = sum(findings.dropped.values())
        logger.warning(
            "%s %s: left out %d unreadable image(s) and %d invalid annotation(s): %s",
            root,
            name,
            len(findings.unreadable),
            dropped,
            "; ".join(f"{path}: {reason}" for path, reason in findings.unreadable[:_EXAMPLES]),
        )
    if not cleaned.images:
        raise DatasetError(f"{root}: no readable images in split {name!r}")
    return cleaned


def validate_detection(report: DetectionReport) -> None:
    """Raise DatasetError for data no detector can be trained (and validated) on."""
    train, val = report.counts["train"], report.counts.get("val")
    if train.images == 0:
        raise DatasetError(
            f"{report.source}: no readable images in train ({train.unreadable} listed, none "
            "could be decoded); fix the file_name paths or the files under train/"
        )
    if sum(train.instances) == 0:
        dropped = sum(report.dropped.values())
        raise DatasetError(
            f"{report.source}: no usable annotations in train ({dropped} dropped as invalid); "
            "a detector learns from boxes: add annotations to instances_train.json"
        )
    if val is None or val.images == 0:
        found = "missing" if val is None else f"empty ({val.unreadable} unreadable images)"
        raise DatasetError(
            f"{report.source}: the validation split is {found}; the trainer scores every epoch "
            "on it: add annotations/instances_val.json and its images under val/"
        )


def format_report(report: DetectionReport) -> str:
    """A human summary: instances per category and split, then problems and warnings."""
    splits = list(report.counts)
    width = max(len(name) for name in (*report.categories, "images with no object"))
    header = f"  {'category':<{width}}  " + "  ".join(f"{split:>7}" for split in splits)
    lines = [f"dataset {report.source}: {len(report.categories)} categories (COCO)", "", header]
    rows = [
        (name, [report.counts[s].instances[k] for s in splits])
        for k, name in enumerate(report.categories)
    ]
    rows += [
        ("instances", [sum(report.counts[s].instances) for s in splits]),
        ("images", [report.counts[s].images for s in splits]),
        ("images with no object", [report.counts[s].empty_images for s in splits]),
    ]
    for name, values in rows:
        lines.append(f"  {name:<{width}}  " + "  ".join(f"{value:>7}" for value in values))
    lines.append(f"imbalance (largest / smallest train category): {report.imbalance:.2f}")
    lines += [
        f"warning: category {name!r} has no training instance; the detector cannot learn it"
        for name in report.untrained_categories
    ]
    return "\n".join(
        lines
        + unreadable_lines(report.unreadable)
        + _annotation_lines(report)
        + duplicate_lines(report.duplicates)
    )


def _annotation_lines(report: DetectionReport) -> list[str]:
    lines = []
    if report.dropped:
        reasons = ", ".join(f"{count} {reason}" for reason, count in report.dropped.items())
        lines.append(f"{sum(report.dropped.values())} annotation(s) dropped: {reasons}")
        lines += [f"  {example}" for example in report.dropped_examples]
    if report.clipped:
        lines.append(f"{report.clipped} box(es) extending outside their image, clipped to it")
    if report.resized:
        lines.append(
            f"{len(report.resized)} image(s) whose size differs from the JSON's width/height "
            "(boxes were checked against the decoded, upright file):"
        )
        lines += [f"  {path}" for path in report.resized[:_EXAMPLES]]
    return lines


def _require_same_categories(splits: Mapping[str, CocoSplit]) -> None:
    """Metrics map val/test categories through train's labels, so they must be the same."""
    train = splits["train"]
    for split in splits.values():
        if (split.labels, split.category_to_label) != (train.labels, train.category_to_label):
            raise DatasetError(
                f"{split.annotation_file}: categories {list(split.labels[1:])} differ from "
                f"train's {list(train.labels[1:])}; every split must list the same categories "
                "(same ids and names)"
            )


def _count(split: CocoSplit, listed: int) -> SplitCounts:
    """Images and non-crowd instances per category (the targets training sees)."""
    per_label = Counter(
        split.category_to_label[a["category_id"]]
        for a in split.coco["annotations"]
        if not a.get("iscrowd", 0)
    )
    with_objects = {a["image_id"] for a in split.coco["annotations"] if not a.get("iscrowd", 0)}
    images = len(split.images)
    instances = [per_label[k] for k in range(1, len(split.labels))]
    empty = sum(1 for entry in split.images if entry["id"] not in with_objects)
    return SplitCounts(images, empty, instances, listed - images)
