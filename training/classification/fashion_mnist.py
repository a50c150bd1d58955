"""Fashion-MNIST from the Debian package `dataset-fashion-mnist` (IDX files, read offline)."""

import gzip
import struct
from pathlib import Path

import numpy as np

from training.core.datacheck import DatasetError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_fashion_mnist(
    split: str, directory: Path = FASHION_MNIST_DIR
) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 28 x 28, labels N) of the official train (60k) or test (10k) split."""
    image_file, label_file = (directory / name for name in FASHION_MNIST_FILES[split])
    if not image_file.is_file() or not label_file.is_file():
        raise DatasetError(
            f"builtin:fashion-mnist needs {image_file}: install the Debian package with "
            "`apt-get install -y dataset-fashion-mnist` (or `make data`)"
        )
    return read_idx(image_file), read_idx(label_file)


def read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file (the MNIST family's format) of unsigned bytes."""
    with gzip.open(path, "rb") as stream:
        data = stream.read()
    zero, dtype, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes")
    shape = struct.unpack(f">{dims}I", data[4 : 4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
