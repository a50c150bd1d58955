"""builtin:scenes: deterministic by seed, boxes that match the pasted alpha, COCO JSON splits."""

import json
from pathlib import Path

import numpy as np
import pytest

from training.core import scenes
from training.core.scenes import SceneConfig, generate_scenes, render_scene

pytestmark = pytest.mark.skipif(
    not (scenes.STAMP_ROOT.is_dir() and scenes.BACKGROUND_ROOT.is_dir()),
    reason="needs Debian tuxpaint-stamps-default and mate-backgrounds (`make scenes-data`)",
)
SMALL = SceneConfig(seed=3, train=6, val=2, test=2, longer_side=256)


def test_the_same_seed_draws_the_same_scene_and_another_seed_does_not() -> None:
    image, objects = render_scene(SMALL, "train", 4)
    again, objects_again = render_scene(SMALL, "train", 4)
    other, _ = render_scene(SceneConfig(seed=4, longer_side=256), "train", 4)
    assert np.array_equal(np.asarray(image), np.asarray(again))
    assert objects == objects_again
    assert not np.array_equal(np.asarray(image), np.asarray(other))
    assert 1 <= len(objects) <= SMALL.max_objects


def test_boxes_are_the_visible_alpha_extent_of_each_pasted_object() -> None:
    for index in range(6):
        rng = np.random.default_rng([SMALL.seed, 0, index])
        background = np.asarray(scenes._background_crop(rng, SMALL.longer_side), dtype=np.int16)
        image, objects = render_scene(SMALL, "train", index)
        changed = np.abs(np.asarray(image, dtype=np.int16) - background).max(axis=2) > 0
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        # Everything pasted lies inside the union of the boxes, up to the soft alpha fringe.
        x0 = min(o.box[0] for o in objects)
        y0 = min(o.box[1] for o in objects)
        x1 = max(o.box[2] for o in objects)
        y1 = max(o.box[3] for o in objects)
        fringe = 3
        assert cols[0] >= x0 - fringe and cols[-1] + 1 <= x1 + fringe
        assert rows[0] >= y0 - fringe and rows[-1] + 1 <= y1 + fringe
        for item in objects:
            left, top, right, bottom = item.box
            assert 0 <= left < right <= image.width and 0 <= top < bottom <= image.height
            assert item.area <= (right - left) * (bottom - top)
            # Tight: the box's border rows and columns hold changed pixels.
            assert changed[int(top), int(left) : int(right)].any()
            assert changed[int(bottom) - 1, int(left) : int(right)].any()
            assert changed[int(top) : int(bottom), int(left)].any()
            assert changed[int(top) : int(bottom), int(right) - 1].any()


def test_generate_writes_coco_splits_once(tmp_path: Path) -> None:
    root = generate_scenes(tmp_path / "scenes", SMALL)
    train = json.loads((root / "annotations" / "instances_train.json").read_text())
    assert len(train["images"]) == SMALL.train
    assert [c["name"] for c in train["categories"]] == list(scenes.CLASSES)
    assert all((root / "train" / image["file_name"]).is_file() for image in train["images"])
    for split in ("val", "test"):
        assert (root / "annotations" / f"instances_{split}.json").is_file()
    stamp = (root / "train" / train["images"][0]["file_name"]).stat().st_mtime_ns
    generate_scenes(tmp_path / "scenes", SMALL)  # a finished copy is reused, not rewritten
    assert (root / "train" / train["images"][0]["file_name"]).stat().st_mtime_ns == stamp
