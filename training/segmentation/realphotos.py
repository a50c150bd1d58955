"""How a segmenter does on real photos the scene generator never produced, masks drawn by hand.

The photos are MATE backgrounds kept out of builtin:scenes because they show flowers or an
insect, and scikit-image's bundled photos (a cat; two with none of the classes, to count false
alarms). The masks are polygons read off a 20x20 grid drawn over each photo (fractions of width
and height, about 2-3% of the side accurate); out-of-focus flowers that are neither clearly
object nor background are "ignore" polygons, scored for neither.

    python -m training.segmentation.realphotos --model models/objects-segmenter
"""

import argparse
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from app.imaging import decode_image
from app.runtime.loader import load_model
from app.runtime.preprocessing import draft_size, preprocess_image
from app.runtime.segmentation import SegmentInput, make_segment_runner
from training.core.datacheck import TRAINING_LIMITS
from training.core.report import save_figure
from training.core.scenes import BACKGROUND_ROOT
from training.segmentation.data import IGNORE_INDEX
from training.segmentation.report import overlay

logger = logging.getLogger(__name__)

REAL_PHOTOS_JSON = "real_photos.json"
REAL_PHOTOS_PNG = "real_photos.png"
Polygon = tuple[tuple[float, float], ...]
IGNORE = "ignore"
# photo -> [(label or "ignore", polygon as fractions of width and height)], painted in order.
ANNOTATIONS: dict[str, list[tuple[str, Polygon]]] = {
    "mate:nature/LadyBird.jpg": [
        (IGNORE, ((0.15, 0.03), (0.26, 0.03), (0.26, 0.27), (0.15, 0.27))),
        (IGNORE, ((0.88, 0.0), (1.0, 0.0), (1.0, 0.25), (0.88, 0.25))),
        (IGNORE, ((0.57, 0.58), (0.95, 0.58), (0.95, 1.0), (0.57, 1.0))),
        ("flower", ((0.055, 0.23), (0.08, 0.17), (0.14, 0.16), (0.19, 0.20), (0.195, 0.28),
                    (0.17, 0.33), (0.145, 0.38), (0.11, 0.40), (0.075, 0.37), (0.06, 0.30))),
        ("insect", ((0.655, 0.50), (0.675, 0.455), (0.70, 0.44), (0.73, 0.45), (0.75, 0.50),
                    (0.745, 0.54), (0.72, 0.56), (0.69, 0.57), (0.665, 0.545))),
    ],
    "mate:nature/Garden.jpg": [
        (IGNORE, ((0.0, 0.0), (0.62, 0.0), (0.55, 0.28), (0.36, 0.45), (0.0, 0.45))),
        (IGNORE, ((0.05, 0.68), (0.26, 0.68), (0.26, 1.0), (0.05, 1.0))),
        ("flower", ((0.36, 0.52), (0.45, 0.45), (0.46, 0.30), (0.57, 0.20), (0.66, 0.18),
                    (0.78, 0.20), (0.82, 0.32), (0.95, 0.30), (1.0, 0.32), (1.0, 0.85),
                    (0.92, 0.92), (0.85, 0.98), (0.78, 0.96), (0.70, 0.85), (0.62, 0.82),
                    (0.50, 0.80), (0.46, 0.72), (0.50, 0.62), (0.44, 0.58), (0.37, 0.60))),
    ],
    "mate:nature/YellowFlower.jpg": [
        ("flower", ((0.20, 0.50), (0.29, 0.48), (0.31, 0.25), (0.37, 0.10), (0.55, 0.06),
                    (0.62, 0.0), (1.0, 0.0), (1.0, 1.0), (0.22, 1.0), (0.25, 0.78),
                    (0.45, 0.72), (0.30, 0.63), (0.21, 0.57))),
    ],
    "skimage:chelsea": [
        (IGNORE, ((0.78, 0.0), (0.92, 0.0), (0.92, 1.0), (0.74, 1.0))),
        ("mammal", ((0.0, 0.0), (0.80, 0.0), (0.85, 0.12), (0.82, 0.35), (0.85, 0.55),
                    (0.80, 0.85), (0.75, 1.0), (0.0, 1.0))),
    ],
    "skimage:astronaut": [],
    "skimage:coffee": [],
}  # fmt: skip


def photo_bytes(photo: str) -> bytes:
    """The photo as an upload would carry it."""
    source, name = photo.split(":", 1)
    if source == "mate":
        return (BACKGROUND_ROOT / name).read_bytes()
    import skimage.data  # noqa: PLC0415 (a dev dependency, only for this report)

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(getattr(skimage.data, name)())).save(buffer, format="PNG")
    return buffer.getvalue()


def hand_mask(
    labels: tuple[str, ...], shapes: list[tuple[str, Polygon]], size: tuple[int, int]
) -> np.ndarray:
    """The hand-drawn class map of one photo (255 = ignore)."""
    width, height = size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for label, polygon in shapes:
        value = IGNORE_INDEX if label == IGNORE else labels.index(label)
        draw.polygon([(x * width, y * height) for x, y in polygon], fill=value)
    return np.asarray(mask)


def score_photo(
    truth: np.ndarray, predicted: np.ndarray, labels: tuple[str, ...]
) -> dict[str, Any]:
    """Per class in truth or prediction: IoU, and the share of the photo each covers."""
    valid = truth != IGNORE_INDEX
    total = int(valid.sum())
    rows = {}
    for class_id in sorted(
        set(np.unique(truth[valid]).tolist()) | set(np.unique(predicted[valid]).tolist())
    ):
        true, found = (truth == class_id) & valid, (predicted == class_id) & valid
        union = int((true | found).sum())
        rows[labels[class_id]] = {
            "iou": round(int((true & found).sum()) / union, 3) if union else None,
            "truth_share": round(int(true.sum()) / total, 3),
            "predicted_share": round(int(found.sum()) / total, 3),
        }
    return {"pixel_accuracy": round(float((truth == predicted)[valid].mean()), 3), "classes": rows}


def evaluate_real_photos(
    model_dir: Path,
) -> tuple[list[dict[str, Any]], list[tuple[Image.Image, np.ndarray, np.ndarray]]]:
    """Every annotated photo through the service's decode, preprocessing and batch function."""
    loaded = load_model(model_dir, torch.device("cpu"))
    card = loaded.card
    run = make_segment_runner(loaded)
    results, pictures = [], []
    for photo, shapes in ANNOTATIONS.items():
        decoded = decode_image(photo_bytes(photo), TRAINING_LIMITS, draft_size(card.input))
        pixels = preprocess_image(decoded.image, card.input)
        [segmented] = run([SegmentInput(pixels, decoded.width, decoded.height)])
        truth = hand_mask(card.labels, shapes, (decoded.width, decoded.height))
        results.append(
            {"photo": photo, "width": decoded.width, "height": decoded.height}
            | score_photo(truth, segmented.class_map, card.labels)
        )
        pictures.append((decoded.image, truth, segmented.class_map))
    return results, pictures


def plot_real_photos(
    results: list[dict[str, Any]],
    pictures: list[tuple[Image.Image, np.ndarray, np.ndarray]],
    path: Path,
) -> None:
    """Each photo with the hand mask and the model's mask painted over it."""
    figure = Figure(figsize=(9, 2.4 * len(results) + 0.4))
    figure.suptitle("hand-drawn mask (hatched: ignore) | the model's mask")
    for row, (result, (image, truth, predicted)) in enumerate(zip(results, pictures, strict=True)):
        small = image.copy()
        small.thumbnail((480, 480))
        scale = (small.height, small.width)
        for column, mask in enumerate((truth, predicted)):
            shrunk = np.asarray(Image.fromarray(mask).resize(scale[::-1], Image.Resampling.NEAREST))
            axes = figure.add_subplot(len(results), 2, row * 2 + column + 1)
            axes.imshow(overlay(small, shrunk))
            if column == 0:
                axes.contourf(
                    shrunk == IGNORE_INDEX, levels=[0.5, 1], hatches=["//"], colors="none"
                )
            names = ", ".join(
                f"{k} {v['predicted_share']:.0%}"
                for k, v in result["classes"].items()
                if v["predicted_share"] > 0.005
            )
            axes.set_title(result["photo"] if column == 0 else names, fontsize=7)
            axes.axis("off")
    save_figure(figure, path)


def main() -> None:
    """Write real_photos.json and real_photos.png beside the model."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m training.segmentation.realphotos")
    parser.add_argument("--model", type=Path, required=True)
    args = parser.parse_args()
    results, pictures = evaluate_real_photos(args.model)
    (args.model / REAL_PHOTOS_JSON).write_text(json.dumps(results, indent=2) + "\n")
    plot_real_photos(results, pictures, args.model / REAL_PHOTOS_PNG)
    for result in results:
        logger.info(
            "%s: pixel accuracy %.3f, %s",
            result["photo"],
            result["pixel_accuracy"],
            result["classes"],
        )


if __name__ == "__main__":
    main()
