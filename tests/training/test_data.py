"""Data loading, splitting and the dataset check: clear messages before any training."""

import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from tests.training.helpers import needs_fashion_mnist, quick_config
from training.classification.data import load_data, load_split, stratified_split
from training.classification.datacheck import format_report, scan_folder
from training.classification.fashion_mnist import read_fashion_mnist
from training.classification.images import FileImages, ImageDataset
from training.core.datacheck import DatasetError


def make_folder(root: Path, counts: dict[str, int], size: int = 16) -> Path:
    """Tiny synthetic images (distinct per file) in one folder per class."""
    for index, (name, count) in enumerate(counts.items()):
        directory = root / name
        directory.mkdir(parents=True)
        for item in range(count):
            colour = (index * 60 % 256, item * 7 % 256, 100)
            Image.new("RGB", (size, size), colour).save(directory / f"{item:03d}.png")
    return root


def test_stratified_split_is_seeded_and_keeps_class_proportions() -> None:
    targets = [0] * 50 + [1] * 30 + [2] * 20
    first = stratified_split(targets, [0.2, 0.1], seed=3)
    assert first == stratified_split(targets, [0.2, 0.1], seed=3)
    assert first != stratified_split(targets, [0.2, 0.1], seed=4)
    rest, val, test = first
    assert sorted(rest + val + test) == list(range(100))
    assert Counter(targets[i] for i in val) == {0: 10, 1: 6, 2: 4}
    assert Counter(targets[i] for i in test) == {0: 5, 1: 3, 2: 2}


def test_a_class_never_loses_its_last_training_image() -> None:
    rest, val = stratified_split([0, 0, 1], [0.9], seed=0)
    assert {0, 1} <= {[0, 0, 1][i] for i in rest}
    assert len(val) == 1


def test_flat_folder_gets_a_stratified_train_val_test_split(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", {"a": 20, "b": 10})
    data, report = load_data(quick_config(root, tmp_path, val_fraction=0.2, test_fraction=0.1))
    assert data.classes == ("a", "b")
    assert report.counts == {"train": [14, 7], "val": [4, 2], "test": [2, 1]}
    assert report.imbalance == 2.0
    assert data.test is not None


def test_split_folders_are_used_as_given(tmp_path: Path) -> None:
    make_folder(tmp_path / "data" / "train", {"a": 10, "b": 10})
    make_folder(tmp_path / "data" / "val", {"a": 3, "b": 2})
    data, report = load_data(quick_config(tmp_path / "data", tmp_path))
    assert report.counts == {"train": [10, 10], "val": [3, 2]}
    assert data.test is None
    assert data.final[0] == "val"


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        load_data(quick_config(tmp_path / "nowhere", tmp_path))


def test_folder_without_class_subfolders_says_what_layout_is_expected(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "x.png")
    with pytest.raises(DatasetError, match="one folder per class"):
        load_data(quick_config(tmp_path / "data", tmp_path))


def test_one_class_is_refused(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", {"only": 10})
    with pytest.raises(
        DatasetError, match=r"one class \('only'\); a classifier needs at least two"
    ):
        load_data(quick_config(root, tmp_path))


def test_empty_class_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", {"a": 10, "b": 10})
    (root / "empty").mkdir()
    with pytest.raises(DatasetError, match="'empty' have no readable training images"):
        load_data(quick_config(root, tmp_path))


def test_no_readable_images_is_refused(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DatasetError, match=r"no readable images \(2 unreadable files\)"):
        load_data(quick_config(tmp_path / "data", tmp_path))


def test_corrupt_files_are_listed_and_left_out(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", {"a": 10, "b": 10})
    good = (root / "a" / "000.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "b" / "page.jpg").write_bytes(b"<html><body>not an image</body></html>")
    (root / "b" / "notes.txt").write_text("labelling notes")
    data, report = load_data(quick_config(root, tmp_path))
    reasons = dict(report.corrupt)
    assert set(reasons) == {str(root / "a" / "truncated.png"), str(root / "b" / "page.jpg")}
    assert "HTML" in reasons[str(root / "b" / "page.jpg")]
    assert report.ignored == [str(root / "b" / "notes.txt")]
    assert sum(sum(counts) for counts in report.counts.values()) == 20
    text = format_report(report)
    assert "2 unreadable file(s), skipped" in text
    assert "truncated.png" in text
    dataset = ImageDataset(data.train, lambda image: image)  # type: ignore[arg-type,return-value]
    assert all(dataset[i] is not None for i in range(len(dataset)))


def test_exact_duplicates_are_reported_with_leakage_across_splits(tmp_path: Path) -> None:
    make_folder(tmp_path / "data" / "train", {"a": 5, "b": 5})
    make_folder(tmp_path / "data" / "val", {"a": 2, "b": 2})
    shutil.copy(tmp_path / "data/train/a/000.png", tmp_path / "data/train/a/copy.png")
    shutil.copy(tmp_path / "data/train/b/001.png", tmp_path / "data/val/b/leak.png")
    _, report = load_data(quick_config(tmp_path / "data", tmp_path))
    assert report.duplicate_groups >= 2
    assert report.cross_split_duplicates >= 1
    assert "spanning splits" in format_report(report)


def test_images_decode_like_the_service(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", {"a": 2, "b": 2})
    Image.new("RGBA", (12, 10), (255, 0, 0, 0)).save(root / "a" / "transparent.png")
    scan = scan_folder(root)
    files = scan.splits["all"]["a"]
    images = FileImages([f.path for f in files], [0] * len(files), [f.digest for f in files])
    transparent = images.load([f.path.name for f in files].index("transparent.png"))
    assert transparent.mode == "RGB"
    assert transparent.getpixel((0, 0)) == (255, 255, 255)  # composited onto white


def test_unknown_builtin_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="choose from fashion-mnist"):
        load_data(quick_config("builtin:imagenet", tmp_path))


@needs_fashion_mnist
def test_fashion_mnist_official_splits() -> None:
    pixels, labels = read_fashion_mnist("test")
    assert pixels.shape == (10_000, 28, 28)
    assert Counter(labels.tolist()) == dict.fromkeys(range(10), 1000)


@needs_fashion_mnist
def test_builtin_fashion_mnist_holds_out_a_stratified_val_split(tmp_path: Path) -> None:
    data, report = load_data(quick_config("builtin:fashion-mnist", tmp_path, val_fraction=0.1))
    assert report.counts == {"train": [5400] * 10, "val": [600] * 10, "test": [1000] * 10}
    assert data.classes[0] == "T-shirt/top"
    assert data.color_mode == "L"
    assert data.native_size == 28
    classes, test = load_split("builtin:fashion-mnist", "test")
    assert classes == data.classes
    assert len(test) == 10_000
