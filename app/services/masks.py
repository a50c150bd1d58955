"""Class maps -> the wire formats of /segment: an indexed PNG, or COCO RLE per class.

RLE comes from faster-coco-eval's port of pycocotools' mask API (the reference that every COCO
tool decodes), never from hand-written run-length code.
"""

import io
from dataclasses import dataclass

import numpy as np
from faster_coco_eval.core import mask as coco_mask
from PIL import Image

# zlib level 1: class maps are long runs, so this is within a few percent of level 9's size
# at a fraction of the time on a serving thread.
_PNG_COMPRESS_LEVEL = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class ClassRle:
    """One class's pixels as COCO compressed RLE (`size` is [height, width], column-major)."""

    class_id: int
    size: tuple[int, int]
    counts: str


def palette() -> list[int]:
    """256 RGB entries: background black, then well-separated colours (viewers show them)."""
    colours = [(0, 0, 0)]
    for index in range(1, 256):
        # Golden-ratio hue steps keep neighbouring class ids far apart in colour.
        hue = (index * 0.618033988749895) % 1.0
        colours.append(_hsv_to_rgb(hue, 0.75, 0.95 if index % 2 else 0.7))
    return [channel for colour in colours for channel in colour]


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    sector = int(hue * 6) % 6
    fraction = hue * 6 - int(hue * 6)
    p, q = value * (1 - saturation), value * (1 - saturation * fraction)
    t = value * (1 - saturation * (1 - fraction))
    rgb = [(value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q)]
    red, green, blue = rgb[sector]
    return round(red * 255), round(green * 255), round(blue * 255)


_PALETTE = palette()


def mask_image(class_map: np.ndarray) -> Image.Image:
    """A single-channel indexed ("P") image whose pixel values are the class ids."""
    image = Image.fromarray(np.ascontiguousarray(class_map, dtype=np.uint8), mode="L")
    image = image.convert("P")  # L -> P keeps the values; only the palette changes
    image.putpalette(_PALETTE)
    return image


def encode_png(class_map: np.ndarray) -> bytes:
    """The class map [H, W] (uint8 class ids) as an indexed PNG."""
    buffer = io.BytesIO()
    mask_image(class_map).save(buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def encode_rle(class_map: np.ndarray, class_ids: list[int]) -> list[ClassRle]:
    """COCO compressed RLE of each listed class's pixels, in the order given."""
    if not class_ids:
        return []
    # The mask API encodes a Fortran-ordered [H, W, K] stack of binary masks in one call.
    stack = np.asfortranarray(
        np.stack([class_map == class_id for class_id in class_ids], axis=2).astype(np.uint8)
    )
    encoded = coco_mask.encode(stack)
    return [
        ClassRle(
            class_id=class_id,
            size=(int(rle["size"][0]), int(rle["size"][1])),
            counts=rle["counts"].decode("ascii"),
        )
        for class_id, rle in zip(class_ids, encoded, strict=True)
    ]


def decode_rle(rle: ClassRle) -> np.ndarray:
    """A class's binary mask [H, W] back from its RLE (for clients and tests)."""
    payload = {"size": list(rle.size), "counts": rle.counts.encode("ascii")}
    decoded: np.ndarray = coco_mask.decode(payload)
    return decoded
