"""Segmentation data: mask folders, COCO polygons and RLE, the dataset check, scene masks."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.services.masks import mask_image
from tests.training.segmentation_data import LABELS, shapes, write_coco_polygons, write_mask_folder
from training.core.datacheck import DatasetError
from training.core.scenes import SceneConfig, check_sources, render_scene_mask
from training.segmentation.data import load_coco_segmentation, load_mask_folder
from training.segmentation.datacheck import check_splits, format_report
from training.segmentation.datasets import TrainPairs
from training.segmentation.sources import load_splits


def scenes_installed() -> bool:
    try:
        check_sources()
    except DatasetError:
        return False
    return True


def test_mask_folder_splits_labels_and_masks(tmp_path: Path) -> None:
    root = write_mask_folder(tmp_path / "data", {"train": 4, "val": 2})
    splits = load_mask_folder(root)
    assert set(splits) == {"train", "val"}
    assert splits["train"].labels == LABELS
    _, expected = shapes(0)
    assert np.array_equal(splits["train"].mask(0), expected)
    assert splits["train"].image(0).size == (80, 64)


def test_the_check_leaves_out_bad_pairs_and_says_why(tmp_path: Path) -> None:
    root = write_mask_folder(tmp_path / "data", {"train": 7, "val": 2})
    masks, images = root / "train" / "masks", root / "train" / "images"
    (masks / "train-000.png").unlink()  # missing
    mask_image(np.zeros((10, 10), np.uint8)).save(masks / "train-001.png")  # wrong size
    mask_image(np.full((64, 80), 9, np.uint8)).save(masks / "train-002.png")  # unknown id 9
    Image.new("RGB", (80, 64)).save(masks / "train-003.png")  # a colour mask
    (images / "train-004.jpg").write_bytes(b"not a jpeg")  # unreadable
    mask_image(np.zeros((64, 80), np.uint8)).save(masks / "train-005.png")  # empty: kept
    ignore = np.asarray(Image.open(masks / "train-006.png")).copy()
    ignore[:5] = 255  # the ignore value is no unknown id
    mask_image(ignore).save(masks / "train-006.png")
    usable, report = check_splits(load_mask_folder(root))
    assert len(usable["train"]) == 2
    assert report.empty_masks["train"] == 1
    assert {kind: len(items) for kind, items in report.problems.items()} == {
        "missing_mask": 2,
        "size_mismatch": 1,
        "unknown_ids": 1,
        "unreadable": 1,
    }
    text = format_report(report)
    assert "mask is 10x10, the upright image train-001.jpg is 80x64" in text
    assert "class ids [9] are not in the 3 labels" in text
    assert "single-channel class ids (PNG mode L or P), not RGB" in text


def test_the_check_refuses_masks_without_objects(tmp_path: Path) -> None:
    root = write_mask_folder(tmp_path / "data", {"train": 2, "val": 1})
    for path in (root / "train" / "masks").iterdir():
        mask_image(np.zeros((64, 80), np.uint8)).save(path)
    with pytest.raises(DatasetError, match="no object pixels"):
        check_splits(load_mask_folder(root))


def test_a_flat_folder_is_split_with_the_seed(tmp_path: Path) -> None:
    root = write_mask_folder(tmp_path / "flat", {"": 20})
    first = load_splits(str(root), seed=3, scenes=0, fractions=(0.2, 0.1))
    again = load_splits(str(root), seed=3, scenes=0, fractions=(0.2, 0.1))
    assert {name: len(split) for name, split in first.items()} == {"train": 14, "val": 4, "test": 2}
    assert first["val"].images == again["val"].images
    assert not set(first["train"].images) & set(first["val"].images)


def test_coco_polygons_and_rle_are_rasterised_small_over_large(tmp_path: Path) -> None:
    split = load_coco_segmentation(write_coco_polygons(tmp_path / "coco"))["train"]
    assert split.labels == ("background", "small", "big")  # category ids 3, 7 in order
    mask = split.mask(0)
    assert mask.shape == (30, 40)
    assert (mask[10:15, 10:15] == 1).all()  # the small RLE square, painted last
    assert mask[6, 20] == 2 and mask[0, 0] == 0
    assert set(np.unique(mask).tolist()) == {0, 1, 2}


def test_train_pairs_move_the_mask_with_the_image(tmp_path: Path) -> None:
    root = write_mask_folder(tmp_path / "data", {"train": 3, "val": 1})
    pairs = TrainPairs(load_mask_folder(root)["train"], 64)
    torch.manual_seed(0)
    for index in range(3):
        image, mask = pairs[index]
        assert image.shape == (3, 64, 64) and mask.shape == (64, 64)
        assert mask.dtype == torch.int64 and set(torch.unique(mask).tolist()) <= {0, 1, 2}
        red = image[0].int() - image[2].int() > 60  # colour jitter keeps red redder than blue
        if (mask == 1).sum() > 20:
            agreement = (red & (mask == 1)).sum() / (mask == 1).sum()
            assert agreement > 0.8


@pytest.mark.skipif(not scenes_installed(), reason="tuxpaint-stamps-default / mate-backgrounds")
def test_scene_masks_are_the_visible_cut_outs() -> None:
    image, mask, objects = render_scene_mask(SceneConfig(), "val", 3)
    assert mask.shape == (image.height, image.width)
    for item in objects:
        x0, y0, x1, y1 = (int(v) for v in item.box)
        inside = mask[y0:y1, x0:x1] == item.category
        # The box is the visible extent: the category touches all four of its sides.
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
    assert int((mask > 0).sum()) >= sum(item.area for item in objects) * 0.99
