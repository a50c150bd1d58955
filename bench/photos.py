"""Real photos for benchmarks, as the JPEG bytes a client would upload."""

import io
from pathlib import Path

import numpy as np
from PIL import Image

# scikit-image's bundled photographs (no download needed).
PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina")


def load_photos(quality: int = 90) -> list[tuple[str, bytes]]:
    """(filename, JPEG bytes) for each bundled photo."""
    from skimage import data  # noqa: PLC0415 - a dev dependency, only needed here

    photos = []
    for name in PHOTO_NAMES:
        pixels: np.ndarray = getattr(data, name)()
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert("RGB").save(buffer, format="JPEG", quality=quality)
        photos.append((f"{name}.jpg", buffer.getvalue()))
    return photos


def write_photos(directory: Path) -> list[Path]:
    """Write the photos as files, for curl or other load generators."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in load_photos():
        path = directory / name
        path.write_bytes(data)
        paths.append(path)
    return paths
