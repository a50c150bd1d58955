"""What a model store's classifiers answer for the photos in issue 9: a before/after table.

    python -m scripts.decision_table [--store models] [--digits 5]

Posts a cat, a coffee cup (scikit-image's real photos), the first hand-written digits of
scikit-learn and the first Fashion-MNIST test images to /classify of every classifier in the
store, through the real app in-process, and prints label, score, decision and unknown_score.
Run it on an old store (e.g. `git worktree add /tmp/old <commit>`) for the "before" column.
"""

import argparse
import io
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image
from skimage import data

from app.config import Settings
from app.main import create_app
from training.classification.data import fashion_mnist_images
from training.classification.unknowns import load_unknown

PHOTOS = (("cat (chelsea)", "chelsea"), ("coffee", "coffee"))


def main() -> None:
    """Print one row per (model, image)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", type=Path, default=Path("models"))
    parser.add_argument("--digits", type=int, default=3)
    args = parser.parse_args()
    images = _images(args.digits)
    settings = Settings(model_dir=args.store, autotune_batch_size=False, max_images_per_request=32)
    with TestClient(create_app(settings)) as client:
        models = client.get("/models").json()["models"]
        for model in models:
            if model["card"]["task"] != "classify":
                continue
            name = model["card"]["name"]
            files = [("image", (label, data_, "image/png")) for label, data_ in images]
            results = client.post("/classify", params={"model": name}, files=files).json()
            for result in results["results"]:
                print(_row(name, result))


def _images(digits: int) -> list[tuple[str, bytes]]:
    photos = [(name, getattr(data, attribute)()) for name, attribute in PHOTOS]
    found = [(name, _png(Image.fromarray(pixels))) for name, pixels in photos]
    handwritten = load_unknown("builtin:digits")
    found += [(f"digit #{i}", handwritten.read_bytes(i)) for i in range(digits)]
    garments = fashion_mnist_images("test")
    found += [(f"fashion test #{i}", garments.read_bytes(i)) for i in range(2)]
    return found


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _row(model: str, result: dict[str, object]) -> str:
    predictions = result.get("predictions")
    if not isinstance(predictions, list):
        return f"{model:24} {result['filename']!s:18} error {result.get('error')}"
    top = predictions[0]
    decision = result.get("decision", "-")
    unknown = result.get("unknown_score")
    unknown_text = f"{unknown:.3f}" if isinstance(unknown, float) else "-"
    return (
        f"{model:24} {result['filename']!s:18} {top['label']:>22} {top['score']:.3f} "
        f"{decision!s:>9} {unknown_text}"
    )


if __name__ == "__main__":
    main()
