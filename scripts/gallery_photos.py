"""Photos for the README's gallery walk-through: `python -m scripts.gallery_photos DIR`.

scikit-image bundles one photo of each subject, so a product's "photos" are different views cut
from its photo (crops, zooms, a mirror image); the new photo to match is a view not among them,
and the photo of something else is the rocket.
"""

import sys
from pathlib import Path

from PIL import Image, ImageOps
from skimage import data

# (left, top, right, bottom) as fractions of the photo.
REFERENCE_VIEWS = ((0.0, 0.0, 1.0, 1.0), (0.05, 0.0, 0.75, 0.9), (0.2, 0.1, 1.0, 1.0))
NEW_VIEW = (0.1, 0.05, 0.9, 0.95)
PRODUCTS = {"cat-chelsea": "chelsea", "espresso-cup": "coffee"}


def skimage_photo(name: str) -> Image.Image:
    """One of scikit-image's bundled photos."""
    return Image.fromarray(getattr(data, name)())


def view(photo: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """The part of `photo` inside the fractional box."""
    width, height = photo.size
    left, top, right, bottom = box
    return photo.crop(
        (int(left * width), int(top * height), int(right * width), int(bottom * height))
    )


def main(directory: Path) -> None:
    """Write DIR/<product>/<n>.jpg, DIR/new-cat.jpg and DIR/rocket.jpg."""
    for product, name in PRODUCTS.items():
        photo = skimage_photo(name)
        (directory / product).mkdir(parents=True, exist_ok=True)
        for number, box in enumerate(REFERENCE_VIEWS, start=1):
            view(photo, box).save(directory / product / f"{number}.jpg", quality=90)
    cat = skimage_photo("chelsea")
    ImageOps.mirror(view(cat, NEW_VIEW)).resize((300, 250)).save(directory / "new-cat.jpg")
    skimage_photo("rocket").save(directory / "rocket.jpg", quality=90)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
