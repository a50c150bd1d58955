"""builtin:scenes: real photo cut-outs pasted onto real photos, with exact boxes and masks.

Shared data of two tasks, so it lives in the core: detection writes the scenes as COCO JSON
with boxes (`write_split`), segmentation as class masks (`render_scene_mask`).

The cut-outs are Tux Paint's photo stamps (Debian `tuxpaint-stamps-default`, RGBA) grouped into
classes by folder; the backgrounds are MATE's nature photos (Debian `mate-backgrounds`). Both are
GPL, so scenes are generated at build time into a data folder and never committed. A scene is a
pure function of (seed, split, index): the same seed writes the same bytes.

Boxes come from the alpha channel of what stays visible after later objects are pasted on top,
so an occluded object's box covers only its visible part; scenes where an object would be
mostly hidden are re-drawn.
"""

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance
from tqdm import tqdm

from training.core.datacheck import DatasetError

logger = logging.getLogger(__name__)

STAMP_ROOT = Path("/usr/share/tuxpaint/stamps")
BACKGROUND_ROOT = Path("/usr/share/backgrounds/mate")
PACKAGES = ("tuxpaint-stamps-default", "mate-backgrounds")
# Class -> stamp folders. Cartoon subfolders are drawings, not photos, and are left out.
CLASSES: dict[str, tuple[str, ...]] = {
    "bird": ("animals/birds",),
    "mammal": ("animals/mammals", "animals/marsupials"),
    "fish": ("animals/fish",),
    "insect": ("animals/insects",),
    "fruit": ("food/fruit",),
    "vegetable": ("food/vegetables",),
    "flower": ("plants/flowers",),
    "road-sign": ("town/roadsigns",),
}
# Photos with nothing of the classes in them. FreshFlower, Garden, YellowFlower, LadyBird and
# TwoWings show flowers or insects (unlabelled positives), so they are kept out of scenes and
# serve as real test photos instead.
BACKGROUNDS = (
    "nature/Aqua.jpg", "nature/Blinds.jpg", "nature/Dune.jpg", "nature/GreenMeadow.jpg",
    "nature/RainDrops.jpg", "nature/Storm.jpg", "nature/Wood.jpg", "abstract/Elephants.jpg",
    "desktop/GreenTraditional.jpg", "desktop/Ubuntu-Mate-Cold-no-logo.png",
    "desktop/Ubuntu-Mate-Warm-no-logo.png", "desktop/Stripes.png",
)  # fmt: skip
SPLITS = ("train", "val", "test")
_ASPECTS = (4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4)
_ALPHA_CUT = 128
_MIN_VISIBLE = 0.4  # an object must keep this share of its pixels visible
_MIN_BOX_SIDE = 8
_BACKGROUND_CACHE_SIDE = 1400


class ScenesUnavailable(DatasetError):
    """The Debian packages with the source photos are not installed."""


@dataclass(frozen=True)
class SceneConfig:
    """How many scenes of what size; every field is part of the data set's identity."""

    seed: int = 0
    train: int = 2000
    val: int = 200
    test: int = 300
    longer_side: int = 512
    max_objects: int = 6
    # Object size as a share of the scene's longer side (drawn log-uniformly).
    min_scale: float = 0.08
    max_scale: float = 0.55
    jpeg_quality: int = 90

    def count(self, split: str) -> int:
        """Scenes in `split`."""
        counts = {"train": self.train, "val": self.val, "test": self.test}
        return counts[split]


@dataclass(frozen=True)
class PlacedObject:
    """One pasted cut-out: class index (1-based), stamp file and visible box (x0, y0, x1, y1)."""

    category: int
    stamp: str
    box: tuple[float, float, float, float]
    area: int


def check_sources() -> None:
    """Raise ScenesUnavailable with the install command when the packages are missing."""
    if not STAMP_ROOT.is_dir() or not BACKGROUND_ROOT.is_dir():
        raise ScenesUnavailable(
            "builtin:scenes and builtin:stamp-products need the Debian packages "
            f"{' and '.join(PACKAGES)}: "
            f"apt-get install -y {' '.join(PACKAGES)} (or `make scenes-data`)"
        )


@cache
def stamp_files() -> dict[str, tuple[Path, ...]]:
    """Class name -> its stamp PNGs, sorted (mirrored duplicates left out)."""
    check_sources()
    return {
        name: tuple(
            sorted(
                path
                for folder in folders
                for path in (STAMP_ROOT / folder).glob("*.png")
                if "mirror" not in path.stem
            )
        )
        for name, folders in CLASSES.items()
    }


@cache
def load_stamp(path: Path) -> Image.Image:
    """A stamp PNG as RGBA, read once per process."""
    image = Image.open(path)
    image.load()
    return image.convert("RGBA")


@cache
def load_background(path: Path) -> Image.Image:
    """A background photo as RGB, at most 1400 px a side, read once per process."""
    image = Image.open(path).convert("RGB")
    image.thumbnail((_BACKGROUND_CACHE_SIDE, _BACKGROUND_CACHE_SIDE))
    return image


def render_scene(
    config: SceneConfig, split: str, index: int
) -> tuple[Image.Image, list[PlacedObject]]:
    """Draw one scene; deterministic in (config.seed, split, index)."""
    canvas, owner, placed = _render(config, split, index)
    return canvas, _visible_objects(owner, placed)


def render_scene_mask(
    config: SceneConfig, split: str, index: int
) -> tuple[Image.Image, np.ndarray, list[PlacedObject]]:
    """The scene of `render_scene` and its class mask: per pixel 0 (background) or a category."""
    canvas, owner, placed = _render(config, split, index)
    categories = np.array([0] + [category for category, _, _ in placed], dtype=np.uint8)
    return canvas, categories[owner], _visible_objects(owner, placed)


def _render(
    config: SceneConfig, split: str, index: int
) -> tuple[Image.Image, np.ndarray, list[tuple[int, str, int]]]:
    rng = np.random.default_rng([config.seed, SPLITS.index(split), index])
    canvas = _background_crop(rng, config.longer_side)
    owner = np.zeros((canvas.height, canvas.width), dtype=np.int16)  # 0 = background
    placed: list[tuple[int, str, int]] = []  # category, stamp, full pixel count
    for _ in range(int(rng.integers(1, config.max_objects + 1))):
        for _attempt in range(6):
            if _try_paste(rng, config, canvas, owner, placed):
                break
    return canvas, owner, placed


def _background_crop(rng: np.random.Generator, longer_side: int) -> Image.Image:
    source = load_background(BACKGROUND_ROOT / BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))])
    aspect = _ASPECTS[int(rng.integers(len(_ASPECTS)))]
    width, height = (longer_side, round(longer_side / aspect))
    if aspect < 1:
        width, height = round(longer_side * aspect), longer_side
    # A random window of 35-100% of the photo's extent, so crops of one photo differ in scale.
    fraction = rng.uniform(0.35, 1.0)
    crop_w = min(source.width, source.height * width / height) * fraction
    crop_h = crop_w * height / width
    left = rng.uniform(0, source.width - crop_w)
    top = rng.uniform(0, source.height - crop_h)
    window = (left, top, left + crop_w, top + crop_h)
    crop = source.resize((width, height), Image.Resampling.BILINEAR, box=window)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return ImageEnhance.Brightness(crop).enhance(rng.uniform(0.7, 1.3))


def _cutout(
    rng: np.random.Generator, config: SceneConfig, canvas: Image.Image
) -> tuple[int, str, Image.Image]:
    category = int(rng.integers(len(CLASSES)))
    files = stamp_files()[list(CLASSES)[category]]
    path = files[int(rng.integers(len(files)))]
    stamp = load_stamp(path)
    scale = np.exp(rng.uniform(np.log(config.min_scale), np.log(config.max_scale)))
    target = scale * max(canvas.size) / max(stamp.size)
    size = (max(4, round(stamp.width * target)), max(4, round(stamp.height * target)))
    cut = stamp.resize(size, Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        cut = cut.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.3:
        cut = cut.rotate(rng.uniform(-25, 25), Image.Resampling.BILINEAR, expand=True)
    rgb, alpha = cut.convert("RGB"), cut.getchannel("A")
    rgb = ImageEnhance.Brightness(rgb).enhance(rng.uniform(0.75, 1.25))
    rgb = ImageEnhance.Color(rgb).enhance(rng.uniform(0.7, 1.3))
    rgb.putalpha(alpha)
    return category + 1, path.relative_to(STAMP_ROOT).as_posix(), rgb


def _try_paste(
    rng: np.random.Generator,
    config: SceneConfig,
    canvas: Image.Image,
    owner: np.ndarray,
    placed: list[tuple[int, str, int]],
) -> bool:
    """Paste one cut-out unless it would hide too much of the objects already there."""
    category, stamp, cut = _cutout(rng, config, canvas)
    mask = np.asarray(cut.getchannel("A")) >= _ALPHA_CUT
    if mask.sum() < _MIN_BOX_SIDE**2:
        return False
    # Up to a quarter of the object may hang over the edge: partly visible objects are real too.
    x = int(rng.integers(-cut.width // 4, canvas.width - 3 * cut.width // 4 + 1))
    y = int(rng.integers(-cut.height // 4, canvas.height - 3 * cut.height // 4 + 1))
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + cut.width, canvas.width), min(y + cut.height, canvas.height)
    if x1 - x0 < _MIN_BOX_SIDE or y1 - y0 < _MIN_BOX_SIDE:
        return False
    inside = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    trial = owner.copy()
    trial[y0:y1, x0:x1][inside] = len(placed) + 1
    counts = np.bincount(trial.ravel(), minlength=len(placed) + 2)
    full = [pixels for _, _, pixels in placed] + [int(mask.sum())]
    if any(counts[i + 1] < _MIN_VISIBLE * full[i] for i in range(len(full))):
        return False
    canvas.paste(cut, (x, y), cut)
    owner[:] = trial
    placed.append((category, stamp, int(mask.sum())))
    return True


def _visible_objects(owner: np.ndarray, placed: list[tuple[int, str, int]]) -> list[PlacedObject]:
    objects = []
    for number, (category, stamp, _) in enumerate(placed, start=1):
        rows = np.flatnonzero((owner == number).any(axis=1))
        cols = np.flatnonzero((owner == number).any(axis=0))
        if len(rows) == 0:
            continue
        # Pixel edges: a box from column a to column b (inclusive) spans [a, b + 1).
        box = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
        objects.append(PlacedObject(category, stamp, box, int((owner == number).sum())))
    return objects


def coco_categories() -> list[dict[str, Any]]:
    """COCO `categories`: ids 1..N in CLASSES order."""
    return [{"id": i, "name": name} for i, name in enumerate(CLASSES, start=1)]


def _render_to_file(
    job: tuple[SceneConfig, str, int, Path],
) -> tuple[dict[str, Any], list[PlacedObject]]:
    config, split, index, folder = job
    image, objects = render_scene(config, split, index)
    name = f"{split}-{index:05d}.jpg"
    image.save(folder / name, quality=config.jpeg_quality)
    return {
        "id": index + 1,
        "file_name": name,
        "width": image.width,
        "height": image.height,
    }, objects


def write_split(config: SceneConfig, split: str, root: Path, workers: int = 1) -> Path:
    """Render `split` into root/<split>/ and write root/annotations/instances_<split>.json."""
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(config, split, i, folder) for i in range(config.count(split))]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            mapped = pool.map(_render_to_file, jobs, chunksize=16)
            results = list(tqdm(mapped, total=len(jobs), desc=split, unit="scene"))
    else:
        results = [_render_to_file(job) for job in tqdm(jobs, desc=split, unit="scene")]
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image, objects in results:
        images.append(image)
        for item in objects:
            x0, y0, x1, y1 = item.box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": item.category,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": item.area,
                    "iscrowd": 0,
                    "stamp": item.stamp,
                }
            )
    payload = {"images": images, "annotations": annotations, "categories": coco_categories()}
    path = root / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def generate_scenes(
    root: Path, config: SceneConfig, workers: int = 1, splits: Sequence[str] = SPLITS
) -> Path:
    """Write every split under `root` unless a finished copy for this exact config is there."""
    check_sources()
    manifest = root / "scenes.json"
    wanted = json.dumps(asdict(config), sort_keys=True)
    if manifest.is_file() and manifest.read_text() == wanted:
        return root
    for split in splits:
        logger.info("generating %d %s scenes into %s", config.count(split), split, root)
        write_split(config, split, root, workers)
    manifest.write_text(wanted)
    return root
