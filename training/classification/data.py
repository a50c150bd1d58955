"""Labelled images from an ImageFolder tree or a built-in data set, checked and split.

`load_data` is the one entry point: it scans, splits (the folders' own train/val/test, or a
stratified seeded split), optionally subsets, runs the dataset check and returns both.
"""

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from training.classification.config import TrainConfig
from training.classification.datacheck import (
    CheckedImages,
    DatasetReport,
    FolderScan,
    scan_folder,
    summarize,
    validate,
)
from training.classification.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    read_fashion_mnist,
)
from training.classification.images import ArrayImages, FileImages, LabeledImages
from training.core.datacheck import DatasetError
from training.core.stamp_products import STAMP_PRODUCTS, resolve_stamp_products

logger = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
BUILTINS = ("fashion-mnist", "stamp-products")


@dataclass(frozen=True, kw_only=True)
class DataSplits:
    """Train, validation and (when there is one) test images over one class list."""

    source: str
    dataset: str
    classes: tuple[str, ...]
    train: LabeledImages
    val: LabeledImages
    test: LabeledImages | None
    color_mode: Literal["RGB", "L"]
    native_size: int | None
    split_note: str

    @property
    def final(self) -> tuple[str, LabeledImages]:
        """The split the shipped metrics are measured on: test, else val."""
        return ("test", self.test) if self.test is not None else ("val", self.val)


def load_data(config: TrainConfig) -> tuple[DataSplits, DatasetReport]:
    """Load, split, subset and check the data set named by `config.data`."""
    folder = _generated_folder(config.data, config.workers or 4)
    if config.data.startswith(BUILTIN_PREFIX) and folder is None:
        data, corrupt, ignored = _load_builtin(config), [], []
    else:
        scan = scan_folder(folder or Path(config.data), config.workers or 4)
        data, corrupt, ignored = _from_scan(scan, config), scan.corrupt, scan.ignored
    if config.max_per_class is not None:
        data = _limit_per_class(data, config.max_per_class, config.seed)
    splits: dict[str, CheckedImages] = {"train": data.train, "val": data.val}
    if data.test is not None:
        splits["test"] = data.test
    report = summarize(data.source, data.classes, splits, corrupt, ignored)
    validate(report)
    return data, report


def load_split(source: str, split: str, workers: int = 4) -> tuple[tuple[str, ...], LabeledImages]:
    """One split folder of a data source (`all`: a folder of class folders), with class names."""
    folder = _generated_folder(source, workers)
    if source.startswith(BUILTIN_PREFIX) and folder is None:
        if split not in FASHION_MNIST_FILES:
            raise DatasetError(f"{source} has the splits {', '.join(FASHION_MNIST_FILES)}")
        return FASHION_MNIST_CLASSES, fashion_mnist_images(split)
    scan = scan_folder(folder or Path(source), workers)
    if split not in scan.splits:
        found = ", ".join(
            f"{name}/" if name != "all" else "class folders only" for name in scan.splits
        )
        raise DatasetError(f"{source} has no {split}/ folder (found: {found})")
    classes = tuple(scan.splits[split])
    return classes, _file_images(scan, split, classes)


def fashion_mnist_images(split: str) -> ArrayImages:
    """The official Fashion-MNIST train or test split from the Debian package."""
    pixels, labels = read_fashion_mnist(split)
    return ArrayImages(pixels, labels.tolist(), f"fashion-mnist-{split}", np.arange(len(labels)))


def stratified_split(
    targets: Sequence[int], fractions: Sequence[float], seed: int
) -> list[list[int]]:
    """Indices for [rest, part for fractions[0], ...], each class shuffled with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for label in sorted(set(targets)):
        members = [i for i, target in enumerate(targets) if target == label]
        order = [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
        start = 0
        for part, fraction in enumerate(fractions, start=1):
            # Never take a class's last training image.
            count = min(round(len(members) * fraction), len(members) - start - 1)
            parts[part] += order[start : start + max(count, 0)]
            start += max(count, 0)
        parts[0] += order[start:]
    return [sorted(part) for part in parts]


def _generated_folder(source: str, workers: int) -> Path | None:
    """The folder of a built-in set that is generated as an ImageFolder (once), else None."""
    if source.startswith(BUILTIN_PREFIX):
        _builtin_name(source)
    if source != STAMP_PRODUCTS:
        return None
    return resolve_stamp_products(max(workers, 1))


def _builtin_name(source: str) -> str:
    name = source.removeprefix(BUILTIN_PREFIX)
    if name not in BUILTINS:
        raise DatasetError(f"unknown built-in data set {name!r}; choose from {', '.join(BUILTINS)}")
    return name


def _load_builtin(config: TrainConfig) -> DataSplits:
    name = _builtin_name(config.data)
    train = fashion_mnist_images("train")
    rest, val = stratified_split(train.targets, [config.val_fraction], config.seed)
    note = (
        f"official test split; val = stratified {config.val_fraction:g} of train "
        f"(seed {config.seed})"
    )
    return DataSplits(
        source=config.data,
        dataset=name,
        classes=FASHION_MNIST_CLASSES,
        train=train.select(rest),
        val=train.select(val),
        test=fashion_mnist_images("test"),
        color_mode="L",
        native_size=28,
        split_note=note,
    )


def _from_scan(scan: FolderScan, config: TrainConfig) -> DataSplits:
    first = "train" if "train" in scan.splits else "all"
    classes = tuple(scan.splits[first])
    for split, names in scan.splits.items():
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DatasetError(f"{scan.root}/{split} has classes not in train: {unknown}")
    whole = _file_images(scan, first, classes)
    fractions = [config.val_fraction]
    if first == "all":
        fractions.append(config.test_fraction)
    elif "val" in scan.splits:
        fractions = []
    parts = stratified_split(whole.targets, fractions, config.seed)
    train = whole.select(parts[0])
    val = _file_images(scan, "val", classes) if "val" in scan.splits else whole.select(parts[1])
    test = _file_images(scan, "test", classes) if "test" in scan.splits else None
    if first == "all":
        test = whole.select(parts[2]) if parts[2] else None
    note = "split folders" if first == "train" else f"stratified split (seed {config.seed})"
    name = scan.root.resolve().name
    return DataSplits(
        source=str(scan.root),
        dataset=name,
        classes=classes,
        train=train,
        val=val,
        test=test,
        color_mode="RGB",
        native_size=None,
        split_note=note,
    )


def _file_images(scan: FolderScan, split: str, classes: Sequence[str]) -> FileImages:
    index = {name: i for i, name in enumerate(classes)}
    entries = [(item, index[name]) for name, files in scan.splits[split].items() for item in files]
    return FileImages(
        [item.path for item, _ in entries],
        [target for _, target in entries],
        [item.digest for item, _ in entries],
    )


def _limit_per_class(data: DataSplits, limit: int, seed: int) -> DataSplits:
    def cap(images: LabeledImages) -> LabeledImages:
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed)).tolist()
        taken: dict[int, int] = {}
        chosen = []
        for i in order:
            if taken.get(images.targets[i], 0) < limit:
                taken[images.targets[i]] = taken.get(images.targets[i], 0) + 1
                chosen.append(i)
        return images.select(sorted(chosen))

    test = cap(data.test) if data.test is not None else None
    note = f"{data.split_note}; at most {limit} per class and split"
    return dataclasses.replace(
        data, train=cap(data.train), val=cap(data.val), test=test, split_note=note
    )
