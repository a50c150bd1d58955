"""builtin:stamp-products: real photo cut-outs as products, rendered into product photos.

Each Tux Paint photo cut-out (Debian `tuxpaint-stamps-default`: fruit, vegetables, nuts, birds,
mammals, vehicles) is one product. A product's photos are renders of that one cut-out on a crop
of a real MATE nature photo (Debian `mate-backgrounds`): scale, position, a small rotation,
sometimes a flower or insect cut-out in front of it, then colour jitter, blur and a JPEG
quality, all drawn through torchvision's transforms. Both packages are GPL, so the set is
generated at first use into data/builtin/ and never committed.

Laid out as an ImageFolder for `evaluate-gallery --reference-split train`: `train/` holds the
reference renders, `test/` the query renders, and the two are drawn on disjoint background
photos, so a query can only match its product through the product. Products are split per kind
into halves: `in-*` (the gallery) sort before `out-*` (look-alikes that are not in it), so
evaluate-gallery's default of leaving the last half out of the gallery picks exactly `out-*`.

Every render is a pure function of (seed, product, split, index): the same seed writes the same
bytes. The renders show one photo per product: no viewpoint change, no new shot.
"""

import json
import logging
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from tqdm import tqdm

from training.core.scenes import (
    BACKGROUND_ROOT,
    STAMP_ROOT,
    check_sources,
    load_background,
    load_stamp,
)

logger = logging.getLogger(__name__)

STAMP_PRODUCTS = "builtin:stamp-products"
ROOT = Path("data/builtin")
REFERENCE_SPLIT, QUERY_SPLIT = "train", "test"
# Kind -> stamp folders (searched recursively; cartoon folders and mirrored copies left out).
KINDS: dict[str, tuple[str, ...]] = {
    "food": ("food/fruit", "food/vegetables", "food/nuts"),
    "bird": ("animals/birds",),
    "mammal": ("animals/mammals", "animals/marsupials"),
    "vehicle": ("vehicles", "military/vehicles"),
}
# Drawings and silhouettes among those folders' photos.
NOT_PHOTOS = frozenset({"hedgehog", "echidna", "7spoke256", "sedan_police"})
OCCLUDERS = ("plants/flowers", "animals/insects")
# The 12 nature photos in two halves of like colours (green, blue-grey, orange, yellow/pale):
# references are rendered on one half only, queries on the other.
BACKGROUNDS: dict[str, tuple[str, ...]] = {
    REFERENCE_SPLIT: (
        "Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "LadyBird.jpg", "Wood.jpg",
    ),
    QUERY_SPLIT: (
        "GreenMeadow.jpg", "RainDrops.jpg", "Storm.jpg", "Garden.jpg", "TwoWings.jpg",
        "YellowFlower.jpg",
    ),
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ProductsConfig:
    """How many renders of what size; every field is part of the data set's identity."""

    seed: int = 0
    references: int = 8  # renders per product in train/ (the gallery draws its K from these)
    queries: int = 12  # renders per product in test/
    side: int = 288
    # The product's longer side as a share of the photo's side, and its centre's range.
    min_scale: float = 0.4
    max_scale: float = 0.8
    max_offset: float = 0.18
    max_rotation: float = 12.0
    occluded_share: float = 0.3
    min_jpeg_quality: int = 60
    max_jpeg_quality: int = 95

    def count(self, split: str) -> int:
        """Renders per product in `split`."""
        return self.references if split == REFERENCE_SPLIT else self.queries


@dataclass(frozen=True, kw_only=True)
class Product:
    """One product: its folder name (in-/out- role, kind, stamp) and its cut-out."""

    name: str
    stamp: Path


@dataclass(frozen=True, kw_only=True)
class ProductSources:
    """What renders are made of: the products, each split's background photos, occluders."""

    products: tuple[Product, ...]
    backgrounds: dict[str, tuple[Path, ...]]
    occluders: tuple[Path, ...]


@dataclass(frozen=True, kw_only=True)
class Render:
    """One planned photo: which product on which background, and its transforms' seed."""

    product: str
    split: str
    index: int
    stamp: Path
    background: Path
    occluder: Path | None
    seed: int

    @property
    def file(self) -> str:
        """Its path under the data set's root."""
        return f"{self.split}/{self.product}/{self.index:03d}.jpg"


def debian_sources(seed: int) -> ProductSources:
    """The installed packages' products (half of each kind `in-`), backgrounds, occluders."""
    check_sources()
    rng = np.random.default_rng(seed)
    products: list[Product] = []
    for kind, folders in KINDS.items():
        stamps = _photos(folders)
        chosen = [stamps[i] for i in rng.permutation(len(stamps))[: len(stamps) // 2 * 2]]
        half = len(chosen) // 2
        for position, stamp in enumerate(chosen):
            role = "in" if position < half else "out"
            products.append(Product(name=f"{role}-{kind}-{_slug(stamp.stem)}", stamp=stamp))
    return ProductSources(
        products=tuple(sorted(products, key=lambda product: product.name)),
        backgrounds={
            split: tuple(BACKGROUND_ROOT / "nature" / name for name in names)
            for split, names in BACKGROUNDS.items()
        },
        occluders=_photos(OCCLUDERS),
    )


def _photos(folders: tuple[str, ...]) -> tuple[Path, ...]:
    return tuple(
        sorted(
            path
            for folder in folders
            for path in (STAMP_ROOT / folder).rglob("*.png")
            if "mirror" not in path.stem
            and "cartoon" not in path.parts
            and path.stem not in NOT_PHOTOS
        )
    )


def _slug(stem: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")


def plan_renders(config: ProductsConfig, sources: ProductSources) -> list[Render]:
    """Every render of every product in both splits, each on its split's own backgrounds."""
    renders = []
    for number, product in enumerate(sources.products):
        for split_number, split in enumerate((REFERENCE_SPLIT, QUERY_SPLIT)):
            backgrounds = sources.backgrounds[split]
            for index in range(config.count(split)):
                rng = np.random.default_rng([config.seed, number, split_number, index])
                occluder = None
                if sources.occluders and rng.random() < config.occluded_share:
                    occluder = sources.occluders[int(rng.integers(len(sources.occluders)))]
                renders.append(
                    Render(
                        product=product.name,
                        split=split,
                        index=index,
                        stamp=product.stamp,
                        background=backgrounds[int(rng.integers(len(backgrounds)))],
                        occluder=occluder,
                        seed=int(rng.integers(2**62)),
                    )
                )
    return renders


def render_photo(config: ProductsConfig, render: Render) -> tuple[Image.Image, int]:
    """The render's RGB photo and its JPEG quality; torch's global generator is left as found."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(render.seed)
        # A mirrored meadow is still a meadow; the product is never mirrored (no camera does).
        scenery = v2.Compose(
            [
                v2.RandomResizedCrop(config.side, scale=(0.1, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
            ]
        )
        canvas: Image.Image = scenery(load_background(render.background))
        box = _paste(canvas, load_stamp(render.stamp), config, _uniform(-1.0, 1.0, 2))
        if render.occluder is not None:
            _occlude(canvas, load_stamp(render.occluder), box)
        camera = v2.Compose(
            [
                v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
                v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.4),
            ]
        )
        photo: Image.Image = camera(canvas)
        quality = int(torch.randint(config.min_jpeg_quality, config.max_jpeg_quality + 1, ()))
    return photo, quality


def _uniform(low: float, high: float, count: int = 1) -> list[float]:
    values: list[float] = (low + (high - low) * torch.rand(count)).tolist()
    return values


def _paste(
    canvas: Image.Image, stamp: Image.Image, config: ProductsConfig, offset: list[float]
) -> tuple[int, int, int, int]:
    """Paste the product, scaled and slightly rotated, near the centre; return its box."""
    longer = _uniform(config.min_scale, config.max_scale)[0] * config.side
    ratio = longer / max(stamp.size)
    size = [max(8, round(stamp.height * ratio)), max(8, round(stamp.width * ratio))]
    cut = F.resize(stamp, size, antialias=True)
    rotate = v2.RandomRotation(
        config.max_rotation, interpolation=v2.InterpolationMode.BILINEAR, expand=True
    )
    cut = rotate(cut)
    centre_x = config.side * (0.5 + config.max_offset * offset[0])
    centre_y = config.side * (0.5 + config.max_offset * offset[1])
    x, y = round(centre_x - cut.width / 2), round(centre_y - cut.height / 2)
    canvas.paste(cut, (x, y), cut)
    return x, y, x + cut.width, y + cut.height


def _occlude(canvas: Image.Image, stamp: Image.Image, box: tuple[int, int, int, int]) -> None:
    """Put a flower or insect in front of part of the product (a quarter to 45% of its size)."""
    x0, y0, x1, y1 = box
    longer = _uniform(0.25, 0.45)[0] * max(x1 - x0, y1 - y0)
    ratio = longer / max(stamp.size)
    cut = F.resize(stamp, [max(4, round(stamp.height * ratio)), max(4, round(stamp.width * ratio))])
    # Centred on a random point of the product's box: it hides an edge or a middle part.
    centre_x, centre_y = _uniform(x0, x1)[0], _uniform(y0, y1)[0]
    canvas.paste(cut, (round(centre_x - cut.width / 2), round(centre_y - cut.height / 2)), cut)


def _render_to_file(job: tuple[ProductsConfig, Render, Path]) -> None:
    config, render, root = job
    photo, quality = render_photo(config, render)
    path = root / render.file
    path.parent.mkdir(parents=True, exist_ok=True)
    photo.save(path, quality=quality)


def stamp_products_root(config: ProductsConfig) -> Path:
    """Where builtin:stamp-products with this config is generated."""
    return (
        ROOT / f"stamp-products-s{config.seed}-{config.references}-{config.queries}-{config.side}"
    )


def generate_stamp_products(
    root: Path, config: ProductsConfig, sources: ProductSources, workers: int = 1
) -> Path:
    """Render every product's photos under `root` unless a finished copy of `config` is there."""
    manifest = root / "stamp-products.json"
    wanted = json.dumps(asdict(config), sort_keys=True, default=str)
    if manifest.is_file() and manifest.read_text() == wanted:
        return root
    renders = plan_renders(config, sources)
    logger.info("rendering %d product photos into %s", len(renders), root)
    jobs = [(config, render, root) for render in renders]
    if workers > 1:
        # Spawned, not forked: a forked child of a process whose torch threads have run (the
        # model is loaded first) can hang in OpenMP on its first torch call.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            list(tqdm(pool.map(_render_to_file, jobs, chunksize=16), total=len(jobs)))
    else:
        for job in tqdm(jobs, unit="photo"):
            _render_to_file(job)
    records = [asdict(render) | {"file": render.file} for render in renders]
    (root / "renders.json").write_text(json.dumps(records, indent=1, default=str))
    manifest.write_text(wanted)
    return root


def resolve_stamp_products(workers: int = 1) -> Path:
    """builtin:stamp-products generated once with the default config; its folder."""
    config = ProductsConfig()
    return generate_stamp_products(
        stamp_products_root(config), config, debian_sources(config.seed), workers
    )
