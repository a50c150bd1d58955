"""The dataset check: class counts, imbalance, unreadable files and exact duplicates.

It runs before any training, so a bad folder fails in seconds with a message that says what to
fix, and a corrupt file is listed and left out instead of crashing an epoch halfway through.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from training.core.datacheck import (
    IMAGE_EXTENSIONS,
    DatasetError,
    Duplicates,
    duplicate_lines,
    find_duplicates,
    inspect_files,
    unreadable_lines,
)

logger = logging.getLogger(__name__)

# Folder names accepted for each split of an ImageFolder tree.
SPLIT_FOLDERS = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


class CheckedImages(Protocol):
    """What the check needs from a split: labels, a content hash and a name per image."""

    @property
    def targets(self) -> Sequence[int]:
        """Class index per image."""
        ...

    def digest(self, index: int) -> str:
        """Hash of the image's content."""
        ...

    def describe(self, index: int) -> str:
        """A path or id a person can find the image by."""
        ...


@dataclass(frozen=True)
class ScannedFile:
    """A readable image file and the hash of its bytes."""

    path: Path
    digest: str


@dataclass(frozen=True)
class FolderScan:
    """Readable files per split and class (class folders with no images included)."""

    root: Path
    splits: dict[str, dict[str, list[ScannedFile]]]
    corrupt: list[tuple[str, str]]
    ignored: list[str]


@dataclass(frozen=True)
class DatasetReport:
    """What the check found, for the log, the run folder and the card."""

    source: str
    classes: tuple[str, ...]
    counts: dict[str, list[int]]
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    duplicate_groups: int = 0
    cross_split_duplicates: int = 0
    duplicate_examples: list[list[str]] = field(default_factory=list)

    @property
    def imbalance(self) -> float:
        """Largest over smallest class in train (inf when a class is empty)."""
        train = self.counts["train"]
        return max(train) / min(train) if min(train) else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "source": self.source,
            "classes": list(self.classes),
            "counts": self.counts,
            "imbalance": self.imbalance,
            "corrupt": [list(item) for item in self.corrupt],
            "ignored": self.ignored,
            "duplicate_groups": self.duplicate_groups,
            "cross_split_duplicates": self.cross_split_duplicates,
            "duplicate_examples": self.duplicate_examples,
        }


def scan_folder(root: Path, workers: int = 4) -> FolderScan:
    """Find every split and class folder under `root` and try to decode every image in it."""
    if not root.exists():
        raise DatasetError(
            f"{root}: no such folder. Pass --data DIR (one subfolder per class) "
            "or --data builtin:fashion-mnist"
        )
    if not root.is_dir():
        raise DatasetError(f"{root} is a file; --data takes a folder with one subfolder per class")
    candidates: dict[str, dict[str, list[Path]]] = {}
    ignored: list[str] = []
    for split, directory in _split_directories(root).items():
        candidates[split] = _class_files(directory, ignored)
    paths = [
        path for classes in candidates.values() for files in classes.values() for path in files
    ]
    results = inspect_files(paths, workers)
    corrupt = [(str(path), found.problem) for path, found in results.items() if found.problem]
    readable = {path: found.digest for path, found in results.items() if not found.problem}
    splits = {
        split: {
            name: [ScannedFile(path, readable[path]) for path in files if path in readable]
            for name, files in classes.items()
        }
        for split, classes in candidates.items()
    }
    return FolderScan(root, splits, corrupt, ignored)


def summarize(
    source: str,
    classes: Sequence[str],
    splits: dict[str, CheckedImages],
    corrupt: Sequence[tuple[str, str]] = (),
    ignored: Sequence[str] = (),
) -> DatasetReport:
    """Count classes per split and group exact duplicates (within and across splits)."""
    counts = {
        split: [sum(1 for target in images.targets if target == c) for c in range(len(classes))]
        for split, images in splits.items()
    }
    duplicates = find_duplicates(
        {
            split: [images.digest(i) for i in range(len(images.targets))]
            for split, images in splits.items()
        },
        lambda split, index: splits[split].describe(index),
    )
    return DatasetReport(
        source,
        tuple(classes),
        counts,
        list(corrupt),
        list(ignored),
        duplicates.groups,
        duplicates.crossing,
        duplicates.examples,
    )


def validate(report: DatasetReport) -> None:
    """Raise DatasetError for data no classifier can be trained on."""
    train = report.counts["train"]
    if sum(sum(counts) for counts in report.counts.values()) == 0:
        unreadable = f" ({len(report.corrupt)} unreadable files)" if report.corrupt else ""
        raise DatasetError(f"{report.source}: no readable images{unreadable}")
    if len(report.classes) < 2:
        found = f" ({report.classes[0]!r})" if report.classes else ""
        raise DatasetError(
            f"{report.source}: found one class{found}; a classifier needs at least two "
            "(one subfolder per class)"
        )
    empty = [name for name, count in zip(report.classes, train, strict=True) if count == 0]
    if empty:
        raise DatasetError(
            f"{report.source}: class(es) {', '.join(map(repr, empty))} have no readable training "
            "images; add images or remove the folder"
        )
    if sum(report.counts.get("val", [])) == 0:
        raise DatasetError(
            f"{report.source}: the validation split is empty; add a val/ folder, raise "
            "--val-fraction, or give each class more images"
        )


def format_report(report: DatasetReport) -> str:
    """A human summary: one line per class, then problems."""
    splits = list(report.counts)
    width = max(len(name) for name in report.classes)
    lines = [f"dataset {report.source}: {len(report.classes)} classes", ""]
    lines.append(f"  {'class':<{width}}  " + "  ".join(f"{split:>7}" for split in splits))
    for index, name in enumerate(report.classes):
        cells = "  ".join(f"{report.counts[split][index]:>7}" for split in splits)
        lines.append(f"  {name:<{width}}  {cells}")
    totals = "  ".join(f"{sum(report.counts[split]):>7}" for split in splits)
    lines.append(f"  {'total':<{width}}  {totals}")
    lines.append(f"imbalance (largest / smallest train class): {report.imbalance:.2f}")
    lines += unreadable_lines(report.corrupt)
    if report.ignored:
        lines.append(f"{len(report.ignored)} file(s) without an image extension, ignored")
    duplicates = Duplicates(
        report.duplicate_groups, report.cross_split_duplicates, report.duplicate_examples
    )
    return "\n".join(lines + duplicate_lines(duplicates))


def _split_directories(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for child in sorted(root.iterdir()):
        split = SPLIT_FOLDERS.get(child.name.lower())
        if child.is_dir() and split is not None and split not in found:
            found[split] = child
    if not found:
        return {"all": root}
    if "train" not in found:
        raise DatasetError(f"{root}: has {', '.join(found)} split folder(s) but no train/")
    return found


def _class_files(directory: Path, ignored: list[str]) -> dict[str, list[Path]]:
    classes = sorted(
        child for child in directory.iterdir() if child.is_dir() and not child.name.startswith(".")
    )
    if not classes:
        raise DatasetError(
            f"{directory}: no class subfolders; expected one folder per class, "
            f"e.g. {directory}/cat/001.jpg and {directory}/dog/001.jpg"
        )
    found: dict[str, list[Path]] = {}
    for class_dir in classes:
        files = sorted(path for path in class_dir.rglob("*") if _visible_file(path, class_dir))
        found[class_dir.name] = [path for path in files if path.suffix.lower() in IMAGE_EXTENSIONS]
        ignored += [str(path) for path in files if path.suffix.lower() not in IMAGE_EXTENSIONS]
    return found


def _visible_file(path: Path, base: Path) -> bool:
    return path.is_file() and not any(part.startswith(".") for part in path.relative_to(base).parts)
