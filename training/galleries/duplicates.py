"""Calibrate the near-duplicate distance on real photos: `python -m training.galleries.duplicates`.

Copies that a client might re-submit (re-encoded JPEG, resized, slightly cropped, and those
combined) are hashed against their originals; every pair of distinct photos is hashed too. For
each Hamming distance the output gives the share of copies caught and of distinct pairs wrongly
called duplicates, and the chosen distance: the largest whose false rate is at most `--max-false`.
Photos: the MATE nature backgrounds, scikit-learn's samples, scikit-image's bundled photos and the
Tux Paint photo cut-outs (Debian packages and pip extras; whichever are installed).
"""

import argparse
import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from app.galleries.phash import hamming_distances, perceptual_hash
from app.imaging import to_rgb

NATURE = Path("/usr/share/backgrounds/mate/nature")
STAMPS = Path("/usr/share/tuxpaint/stamps")
_LONGEST = 1024  # originals are scaled to this first: phone photos, not 20-megapixel scans
# "cat" is chelsea again (the same photo), so it is left out.
_SKIMAGE = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass")
_SKIMAGE_MORE = ("gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "rocket")

Transform = Callable[[Image.Image], Image.Image]


def _jpeg(quality: int) -> Transform:
    def apply(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    return apply


def _scale(factor: float) -> Transform:
    return lambda image: image.resize(
        (max(8, round(image.width * factor)), max(8, round(image.height * factor))),
        Image.Resampling.BILINEAR,
    )


def _crop(fraction: float) -> Transform:
    """Cut `fraction` of the side off each edge."""

    def apply(image: Image.Image) -> Image.Image:
        dx, dy = round(image.width * fraction), round(image.height * fraction)
        return image.crop((dx, dy, image.width - dx, image.height - dy))

    return apply


def _chain(*steps: Transform) -> Transform:
    def apply(image: Image.Image) -> Image.Image:
        for step in steps:
            image = step(image)
        return image

    return apply


TRANSFORMS: dict[str, Transform] = {
    "jpeg q90": _jpeg(90),
    "jpeg q70": _jpeg(70),
    "jpeg q50": _jpeg(50),
    "resize 1/2": _scale(0.5),
    "resize 1/4": _scale(0.25),
    "crop 2% per edge": _crop(0.02),
    "crop 5% per edge": _crop(0.05),
    "crop 10% per edge": _crop(0.10),
    "resize 1/2 + jpeg q70": _chain(_scale(0.5), _jpeg(70)),
    "crop 5% + resize 1/2 + jpeg q70": _chain(_crop(0.05), _scale(0.5), _jpeg(70)),
}


def real_photos(stamps: int) -> Iterator[tuple[str, Image.Image]]:
    """(name, RGB photo) of every source installed here."""
    for path in sorted(NATURE.glob("*.jpg")):
        yield path.name, _bounded(Image.open(path))
    try:
        from sklearn.datasets import load_sample_images  # noqa: PLC0415 - optional source

        for index, pixels in enumerate(load_sample_images().images):
            yield f"sklearn-{index}", Image.fromarray(pixels)
    except ImportError:
        pass
    yield from _skimage_photos()
    paths = sorted(STAMPS.rglob("*.png"))
    for path in np.random.default_rng(0).permutation(np.array(paths, dtype=object))[:stamps]:
        yield path.name, _bounded(to_rgb(Image.open(path)))


def _skimage_photos() -> Iterator[tuple[str, Image.Image]]:
    try:
        from skimage import data  # noqa: PLC0415 - optional source
    except ImportError:
        return
    for name in _SKIMAGE + _SKIMAGE_MORE:
        try:
            yield f"skimage-{name}", to_rgb(Image.fromarray(getattr(data, name)()))
        except Exception:  # photos that are not bundled need a download
            continue


def _bounded(image: Image.Image) -> Image.Image:
    image = to_rgb(image)
    image.thumbnail((_LONGEST, _LONGEST))
    return image


def measure(stamps: int, max_false: float) -> dict[str, object]:
    """The distance table and the chosen distance."""
    names, originals = zip(*real_photos(stamps), strict=True)
    hashes = np.array([perceptual_hash(image) for image in originals], dtype=np.uint64)
    copies = {
        label: np.array(
            [
                hamming_distances(perceptual_hash(apply(image)), hashes[i : i + 1])[0]
                for i, image in enumerate(originals)
            ]
        )
        for label, apply in TRANSFORMS.items()
    }
    distinct = np.concatenate(
        [hamming_distances(int(hashes[i]), hashes[i + 1 :]) for i in range(len(hashes) - 1)]
    )
    table = {
        distance: {
            "false_duplicates": float((distinct <= distance).mean()),
            **{label: float((d <= distance).mean()) for label, d in copies.items()},
        }
        for distance in range(0, 25)
    }
    chosen = max(d for d, row in table.items() if row["false_duplicates"] <= max_false)
    return {
        "photos": len(names),
        "distinct_pairs": len(distinct),
        "chosen_distance": chosen,
        "at_chosen": table[chosen],
        "table": table,
    }


def main(argv: list[str] | None = None) -> int:
    """Print the measurement as JSON."""
    parser = argparse.ArgumentParser(prog="python -m training.galleries.duplicates")
    parser.add_argument("--stamps", type=int, default=400, help="Tux Paint cut-outs to include")
    parser.add_argument("--max-false", type=float, default=0.0001, help="distinct pairs allowed")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.stamps, args.max_false), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
