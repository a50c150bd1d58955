"""Training fixtures: small real ImageFolder trees written from Fashion-MNIST."""

from pathlib import Path

import pytest

from tests.training.helpers import FASHION_MNIST_MISSING, fashion_mnist_installed, write_folder


@pytest.fixture(scope="session")
def fashion_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ImageFolder tree with train/ (40 per class) and test/ (15 per class) of real photos."""
    if not fashion_mnist_installed():
        pytest.skip(FASHION_MNIST_MISSING)
    root = tmp_path_factory.mktemp("fashion-folder")
    write_folder(root / "train", "train", 40)
    write_folder(root / "test", "test", 15)
    return root


@pytest.fixture(scope="session")
def flat_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ImageFolder with no split folders (one folder per class, 30 images each)."""
    if not fashion_mnist_installed():
        pytest.skip(FASHION_MNIST_MISSING)
    root = tmp_path_factory.mktemp("flat-folder")
    write_folder(root, "train", 30)
    return root
