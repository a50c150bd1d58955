"""Images that are none of a model's classes: a user's folder, or real built-in sets.

The built-in sets install offline (README "Training") and are made at run time, never committed:
- `builtin:digits`: the 1,797 hand-written digits of scikit-learn (8x8 scans by 43 people),
  white on black like Fashion-MNIST, enlarged to 28 px.
- `builtin:nature-photos`: 600 seeded square crops of the 12 MATE nature photos, 64 px.
- `builtin:objects`: the ~800 Tux Paint photo cut-outs (fruit, animals, vehicles, ...) on
  black, 64 px: product-like objects that are not garments.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from training.classification.images import ArrayImages, FileImages, LabeledImages
from training.core.datacheck import IMAGE_EXTENSIONS, DatasetError, inspect_files

BUILTIN_PREFIX = "builtin:"
NATURE_PHOTOS = Path("/usr/share/backgrounds/mate/nature")
TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")

_CROPS_PER_PHOTO = 50
_SIDE = 64
_SEED = 20261129


def load_unknown(source: str, workers: int = 4) -> LabeledImages:
    """The images of `source` (a folder, searched recursively, or builtin:NAME); targets are -1."""
    if source.startswith(BUILTIN_PREFIX):
        name = source.removeprefix(BUILTIN_PREFIX)
        if name not in BUILTIN_UNKNOWNS:
            choices = ", ".join(BUILTIN_PREFIX + known for known in BUILTIN_UNKNOWNS)
            raise DatasetError(f"unknown built-in unknown set {source!r}; choose from {choices}")
        return BUILTIN_UNKNOWNS[name]()
    return _folder(Path(source), workers)


def _folder(root: Path, workers: int) -> FileImages:
    if not root.is_dir():
        raise DatasetError(f"--unknown {root}: no such folder")
    paths = sorted(
        path
        for path in root.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
    )
    inspected = inspect_files(paths, workers)
    readable = [path for path in paths if inspected[path].problem is None]
    if not readable:
        raise DatasetError(f"--unknown {root}: no readable images")
    digests = [inspected[path].digest for path in readable]
    return FileImages(readable, [-1] * len(readable), digests)


def _digits() -> ArrayImages:
    from sklearn.datasets import load_digits  # noqa: PLC0415 - a training extra, loaded on use

    scans = load_digits().images  # (1797, 8, 8), ink 0..16
    pixels = np.stack(
        [
            np.asarray(
                Image.fromarray((scan * (255 / 16)).round().astype(np.uint8)).resize(
                    (28, 28), Image.Resampling.BICUBIC
                )
            )
            for scan in scans
        ]
    )
    return _array(pixels, "sklearn-digits")


def _nature_photos() -> ArrayImages:
    photos = sorted(NATURE_PHOTOS.glob("*.jpg"))
    if not photos:
        raise DatasetError(f"no photos in {NATURE_PHOTOS}: install the mate-backgrounds package")
    generator = np.random.default_rng(_SEED)
    crops = []
    for path in photos:
        with Image.open(path) as opened:
            # libjpeg scales while decoding: the crops end at 64 px, the photos are 2-5k px.
            opened.draft("RGB", (opened.width // 4, opened.height // 4))
            photo = opened.convert("RGB")
        for _ in range(_CROPS_PER_PHOTO):
            crops.append(_random_crop(photo, generator))
    return _array(np.stack(crops), "mate-nature-crops")


def _random_crop(photo: Image.Image, generator: np.random.Generator) -> np.ndarray:
    shorter = min(photo.size)
    side = int(generator.uniform(0.15, 0.6) * shorter)
    left = int(generator.integers(0, photo.width - side + 1))
    top = int(generator.integers(0, photo.height - side + 1))
    crop = photo.crop((left, top, left + side, top + side))
    return np.asarray(crop.resize((_SIDE, _SIDE), Image.Resampling.BILINEAR))


def _objects() -> ArrayImages:
    stamps = sorted(TUXPAINT_STAMPS.rglob("*.png"))
    if not stamps:
        raise DatasetError(f"no stamps in {TUXPAINT_STAMPS}: install tuxpaint-stamps-default")
    cutouts = [_on_black(path) for path in stamps]
    return _array(
        np.stack([cutout for cutout in cutouts if cutout is not None]), "tuxpaint-objects"
    )


def _on_black(path: Path) -> np.ndarray | None:
    """The cut-out centred on a black square, as Fashion-MNIST shows its products."""
    try:
        with Image.open(path) as opened:
            stamp = opened.convert("RGBA")
    except OSError:
        return None
    stamp.thumbnail((_SIDE - 8, _SIDE - 8))
    canvas = Image.new("RGB", (_SIDE, _SIDE))
    offset = ((_SIDE - stamp.width) // 2, (_SIDE - stamp.height) // 2)
    canvas.paste(stamp, offset, stamp)
    return np.asarray(canvas)


def _array(pixels: np.ndarray, name: str) -> ArrayImages:
    return ArrayImages(pixels, [-1] * len(pixels), name, np.arange(len(pixels)))


BUILTIN_UNKNOWNS: dict[str, Callable[[], ArrayImages]] = {
    "digits": _digits,
    "nature-photos": _nature_photos,
    "objects": _objects,
}


def overlapping(known: list[LabeledImages], unknown: LabeledImages) -> list[str]:
    """Unknown images whose content hash is also among the known images (the same files)."""
    known_digests = {images.digest(i) for images in known for i in range(len(images))}
    return [unknown.describe(i) for i in range(len(unknown)) if unknown.digest(i) in known_digests]
