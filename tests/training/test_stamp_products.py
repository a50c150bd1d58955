"""builtin:stamp-products: an ImageFolder of renders, seeded, references and queries on
disjoint backgrounds."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.core import scenes
from training.core.stamp_products import (
    QUERY_SPLIT,
    REFERENCE_SPLIT,
    Product,
    ProductsConfig,
    ProductSources,
    debian_sources,
    generate_stamp_products,
    plan_renders,
)

TINY = ProductsConfig(seed=5, references=3, queries=4, side=64)
COLOURS = {
    "in-food-red": (220, 30, 30),
    "in-food-blue": (30, 30, 220),
    "out-food-red": (200, 60, 40),
}


def _stamp(path: Path, colour: tuple[int, int, int]) -> Path:
    """An RGBA cut-out: a coloured disc on transparency."""
    yy, xx = np.mgrid[:40, :30]
    inside = ((yy - 20) / 19) ** 2 + ((xx - 15) / 14) ** 2 <= 1
    pixels = np.zeros((40, 30, 4), dtype=np.uint8)
    pixels[inside] = (*colour, 255)
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def _photo(path: Path, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def sources(tmp_path: Path) -> ProductSources:
    """Three products, two background photos per split, one occluder."""
    folder = tmp_path / "sources"
    folder.mkdir()
    products = tuple(
        Product(name=name, stamp=_stamp(folder / f"{name}.png", colour))
        for name, colour in COLOURS.items()
    )
    backgrounds = {
        split: tuple(_photo(folder / f"{split}-{i}.png", seed=10 * n + i) for i in range(2))
        for n, split in enumerate((REFERENCE_SPLIT, QUERY_SPLIT))
    }
    occluder = _stamp(folder / "occluder.png", (240, 240, 40))
    return ProductSources(products=products, backgrounds=backgrounds, occluders=(occluder,))


def _files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*.jpg")}


def test_an_image_folder_per_split_with_the_same_products(
    tmp_path: Path, sources: ProductSources
) -> None:
    root = generate_stamp_products(tmp_path / "set", TINY, sources)
    for split, count in ((REFERENCE_SPLIT, TINY.references), (QUERY_SPLIT, TINY.queries)):
        folders = sorted(path.name for path in (root / split).iterdir())
        assert folders == sorted(COLOURS)
        for name in folders:
            photos = sorted((root / split / name).glob("*.jpg"))
            assert len(photos) == count
            with Image.open(photos[0]) as image:
                assert image.size == (TINY.side, TINY.side)
                assert image.mode == "RGB"


def test_references_and_queries_are_drawn_on_disjoint_background_photos(
    tmp_path: Path, sources: ProductSources
) -> None:
    root = generate_stamp_products(tmp_path / "set", TINY, sources)
    records = json.loads((root / "renders.json").read_text())
    used = {
        split: {record["background"] for record in records if record["split"] == split}
        for split in (REFERENCE_SPLIT, QUERY_SPLIT)
    }
    assert used[REFERENCE_SPLIT] and used[QUERY_SPLIT]
    assert not used[REFERENCE_SPLIT] & used[QUERY_SPLIT]
    for split, paths in used.items():
        assert paths <= {str(path) for path in sources.backgrounds[split]}


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(
    tmp_path: Path, sources: ProductSources
) -> None:
    first = _files(generate_stamp_products(tmp_path / "a", TINY, sources))
    again = _files(generate_stamp_products(tmp_path / "b", TINY, sources))
    other_config = ProductsConfig(seed=6, references=3, queries=4, side=64)
    other = _files(generate_stamp_products(tmp_path / "c", other_config, sources))
    assert first == again
    assert first.keys() == other.keys()
    assert first != other


def test_a_finished_set_is_not_rendered_again(tmp_path: Path, sources: ProductSources) -> None:
    root = generate_stamp_products(tmp_path / "set", TINY, sources)
    marker = root / REFERENCE_SPLIT / "in-food-red" / "000.jpg"
    marker.write_bytes(b"kept")
    generate_stamp_products(root, TINY, sources)
    assert marker.read_bytes() == b"kept"


@pytest.mark.skipif(
    not (scenes.STAMP_ROOT.is_dir() and scenes.BACKGROUND_ROOT.is_dir()),
    reason="needs Debian tuxpaint-stamps-default and mate-backgrounds (`make scenes-data`)",
)
def test_the_debian_products_split_each_kind_in_halves_on_disjoint_photos() -> None:
    sources = debian_sources(0)
    names = [product.name for product in sources.products]
    assert len(names) == len(set(names))
    inside = [name for name in names if name.startswith("in-")]
    assert len(inside) * 2 == len(names)
    # In-gallery products sort first: evaluate-gallery leaves the last half out of the gallery.
    assert sorted(names)[: len(inside)] == sorted(inside)
    for kind in ("food", "bird", "mammal", "vehicle"):
        assert sum(name.startswith(f"in-{kind}-") for name in names) == sum(
            name.startswith(f"out-{kind}-") for name in names
        )
    assert not set(sources.backgrounds[REFERENCE_SPLIT]) & set(sources.backgrounds[QUERY_SPLIT])
    renders = plan_renders(ProductsConfig(), sources)
    for render in renders:
        assert render.background in sources.backgrounds[render.split]
