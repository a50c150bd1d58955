"""How a detector does on real photos the scene generator never produced, boxes drawn by hand.

The photos are MATE backgrounds that were kept out of builtin:scenes because they show flowers
or an insect, and scikit-image's bundled photos (a cat; two with none of the classes, to count
false alarms). Boxes were read off a 10x10 grid drawn over each photo, as fractions of width
and height, so they are accurate to about 1-2% of the image side.

    python -m training.detection.realphotos --model models/objects-detector
"""

import argparse
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from torchvision.ops import box_iou

from app.imaging import decode_image
from app.runtime.loader import load_model
from app.runtime.preprocessing import draft_size, preprocess_image
from training.core.datacheck import TRAINING_LIMITS
from training.detection.scenes import BACKGROUND_ROOT

logger = logging.getLogger(__name__)

REAL_PHOTOS_JSON = "real_photos.json"
REAL_PHOTOS_PNG = "real_photos.png"
Box = tuple[float, float, float, float]
# photo -> [(label, (x0, y0, x1, y1) as fractions of width and height)]
ANNOTATIONS: dict[str, list[tuple[str, Box]]] = {
    "mate:nature/LadyBird.jpg": [
        ("insect", (0.655, 0.44, 0.75, 0.57)),
        ("flower", (0.05, 0.16, 0.195, 0.41)),
    ],
    "mate:nature/Garden.jpg": [("flower", (0.36, 0.19, 1.0, 0.98))],
    "mate:nature/YellowFlower.jpg": [("flower", (0.2, 0.0, 1.0, 1.0))],
    "mate:nature/FreshFlower.jpg": [("flower", (0.0, 0.0, 1.0, 1.0))],
    "skimage:chelsea": [("mammal", (0.0, 0.0, 0.87, 1.0))],
    "skimage:astronaut": [],
    "skimage:coffee": [],
}


@dataclass(frozen=True)
class PhotoResult:
    """One photo: the hand boxes, what the model found, and the best match for each box."""

    photo: str
    width: int
    height: int
    truth: list[dict[str, Any]]
    detections: list[dict[str, Any]]


def photo_bytes(photo: str) -> bytes:
    """The photo as an upload would carry it."""
    source, name = photo.split(":", 1)
    if source == "mate":
        return (BACKGROUND_ROOT / name).read_bytes()
    import skimage.data  # noqa: PLC0415 (a dev dependency, only for this report)

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(getattr(skimage.data, name)())).save(buffer, format="PNG")
    return buffer.getvalue()


def evaluate_real_photos(
    model_dir: Path, score_threshold: float | None = None
) -> list[PhotoResult]:
    """Run the exported detector on every annotated photo through the service's preprocessing."""
    loaded = load_model(model_dir, torch.device("cpu"))
    card = loaded.card
    assert card.detection is not None
    threshold = card.detection.score_threshold if score_threshold is None else score_threshold
    results = []
    for photo, boxes in ANNOTATIONS.items():
        decoded = decode_image(photo_bytes(photo), TRAINING_LIMITS, draft_size(card.input))
        pixels = preprocess_image(decoded.image, card.input)
        with torch.inference_mode():
            output = loaded.module([pixels])[0]
        scale = torch.tensor(
            [decoded.width / pixels.shape[2], decoded.height / pixels.shape[1]] * 2
        )
        keep = output["scores"] >= threshold
        found = output["boxes"][keep] * scale
        labels = [card.labels[int(k)] for k in output["labels"][keep]]
        scores = output["scores"][keep].tolist()
        size = torch.tensor([decoded.width, decoded.height] * 2, dtype=torch.float32)
        truth_boxes = torch.tensor([box for _, box in boxes]).reshape(-1, 4) * size
        ious = box_iou(truth_boxes, found) if len(found) else torch.zeros(len(boxes), 0)
        truth = [
            _best_match(label, truth_boxes[row], ious[row], labels, scores)
            for row, (label, _) in enumerate(boxes)
        ]
        detections = [
            {"label": name, "score": round(score, 3), "box": [round(v, 1) for v in box]}
            for name, score, box in zip(labels, scores, found.tolist(), strict=True)
        ]
        results.append(PhotoResult(photo, decoded.width, decoded.height, truth, detections))
    return results


def _best_match(
    label: str, box: torch.Tensor, ious: torch.Tensor, labels: list[str], scores: list[float]
) -> dict[str, Any]:
    """The detection of the same class that overlaps a hand box most."""
    same = [i for i, name in enumerate(labels) if name == label]
    best = max(same, key=lambda i: float(ious[i]), default=None)
    iou = float(ious[best]) if best is not None else 0.0
    return {
        "label": label,
        "box": [round(v, 1) for v in box.tolist()],
        "found": iou >= 0.5,
        "best_iou": round(iou, 3),
        "best_score": round(scores[best], 3) if best is not None else 0.0,
    }


def summarize(results: list[PhotoResult], threshold: float) -> dict[str, Any]:
    """Hits, misses and false alarms over all photos, at the threshold used."""
    objects = sum(len(r.truth) for r in results)
    hits = sum(t["found"] for r in results for t in r.truth)
    matched = sum(1 for r in results for t in r.truth if t["found"])
    alarms = sum(len(r.detections) for r in results) - matched
    return {
        "score_threshold": threshold,
        "photos": len(results),
        "objects": objects,
        "found_iou50": hits,
        "false_alarms": alarms,
        "photos_detail": [r.__dict__ for r in results],
    }


def plot_real_photos(results: list[PhotoResult], path: Path) -> None:
    """Each photo with the hand boxes (dashed white) and detections (red)."""
    figure = Figure(figsize=(16, 7.5))
    for index, result in enumerate(results):
        axes = figure.add_subplot(2, 4, index + 1)
        image = decode_image(photo_bytes(result.photo), TRAINING_LIMITS, 512).image
        image.thumbnail((512, 512))
        factor = image.width / result.width
        axes.imshow(image)
        for item in result.truth:
            x0, y0, x1, y1 = (v * factor for v in item["box"])
            axes.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", ls="--"))
        for item in result.detections:
            x0, y0, x1, y1 = (v * factor for v in item["box"])
            axes.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="red", lw=1.5))
            axes.text(
                x0,
                y0,
                f"{item['label']} {item['score']:.2f}",
                color="white",
                fontsize=7,
                backgroundcolor="red",
            )
        axes.set_title(result.photo, fontsize=8)
        axes.axis("off")
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    """Write real_photos.json and real_photos.png beside the model."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m training.detection.realphotos")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--score-threshold", type=float, help="default: the card's")
    args = parser.parse_args()
    results = evaluate_real_photos(args.model, args.score_threshold)
    card = load_model(args.model, torch.device("cpu")).card
    threshold = args.score_threshold or (card.detection.score_threshold if card.detection else 0.5)
    summary = summarize(results, threshold)
    (args.model / REAL_PHOTOS_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    plot_real_photos(results, args.model / REAL_PHOTOS_PNG)
    logger.info(
        "real photos: %d/%d boxes found at IoU >= 0.5, %d false alarms (score >= %.2f)",
        summary["found_iou50"],
        summary["objects"],
        summary["false_alarms"],
        threshold,
    )


if __name__ == "__main__":
    main()
