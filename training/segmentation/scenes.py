"""builtin:scenes-seg: the detection scenes with their exact class masks, as a mask folder.

The scenes are `training.core.scenes`' (real Tux Paint cut-outs pasted onto real MATE
photos); a pixel's class is the category of the cut-out that stays visible there (alpha >= 128),
else background. Written in the user format of `training.segmentation.data` (images, same-named
PNG masks of class ids, labels.txt), so one loader and one check serve both.
"""

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from app.services.masks import mask_image
from training.core.scenes import CLASSES, SPLITS, SceneConfig, check_sources, render_scene_mask
from training.segmentation.data import BACKGROUND, IMAGES, LABELS_FILE, MASKS

SCENES_SEG = "builtin:scenes-seg"
SCENES_SEG_ROOT = Path("data/builtin")


def scenes_root(config: SceneConfig) -> Path:
    """Where builtin:scenes-seg with this config is generated."""
    return SCENES_SEG_ROOT / f"scenes-seg-s{config.seed}-{config.train}-{config.longer_side}"


def _render_to_files(job: tuple[SceneConfig, str, int, Path]) -> None:
    config, split, index, folder = job
    image, mask, _ = render_scene_mask(config, split, index)
    stem = f"{split}-{index:05d}"
    image.save(folder / IMAGES / f"{stem}.jpg", quality=config.jpeg_quality)
    mask_image(mask).save(folder / MASKS / f"{stem}.png")


def generate_scene_masks(config: SceneConfig, workers: int = 1) -> Path:
    """Write every split unless a finished copy for this exact config is there; return it."""
    check_sources()
    root = scenes_root(config)
    manifest = root / "scenes.json"
    wanted = json.dumps(asdict(config), sort_keys=True)
    if manifest.is_file() and manifest.read_text() == wanted:
        return root
    for split in SPLITS:
        folder = root / split
        for sub in (IMAGES, MASKS):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        jobs = [(config, split, index, folder) for index in range(config.count(split))]
        logging.getLogger(__name__).info("generating %d %s scenes with masks", len(jobs), split)
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                done = pool.map(_render_to_files, jobs, chunksize=16)
                list(tqdm(done, total=len(jobs), desc=split, unit="scene"))
        else:
            for job in tqdm(jobs, desc=split, unit="scene"):
                _render_to_files(job)
    (root / LABELS_FILE).write_text("\n".join([BACKGROUND, *CLASSES]) + "\n")
    manifest.write_text(wanted)
    return root
