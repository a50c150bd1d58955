"""A real /segment answer drawn over its photo, for the README.

    python -m scripts.segment_example [--model objects-segmenter] [--photo chelsea]
                                      [--out docs/images/segment-chelsea.png]

Posts one of scikit-image's photos (public domain or BSD: they may be committed, unlike the GPL
scene photos) to /segment of the real app in-process, decodes the PNG mask from the HTTP
answer and draws photo | mask | mask over photo, titled with the answer's classes.
"""

import argparse
import base64
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from matplotlib.figure import Figure
from PIL import Image
from skimage import data

from app.config import Settings
from app.main import create_app
from training.core.report import save_figure
from training.segmentation.report import overlay


def main() -> None:
    """Write the picture and print the answer (mask data shortened)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", type=Path, default=Path("models"))
    parser.add_argument("--model", default="objects-segmenter")
    parser.add_argument("--photo", default="chelsea", help="a skimage.data photo name")
    parser.add_argument("--out", type=Path, default=Path("docs/images/segment-chelsea.png"))
    args = parser.parse_args()
    photo = Image.fromarray(np.asarray(getattr(data, args.photo)())).convert("RGB")
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=95)
    with tempfile.TemporaryDirectory() as store:
        # A store with only this model: the app loads (and tunes) nothing else.
        (Path(store) / args.model).symlink_to((args.store / args.model).resolve())
        settings = Settings(
            model_dir=Path(store),
            default_segmenter=args.model,
            autotune_batch_size=False,  # one request: nothing to tune for
            tuning_dir=Path(store) / "tuning",
        )
        with TestClient(create_app(settings)) as client:
            answer = client.post(
                "/segment", files={"image": (f"{args.photo}.jpg", buffer.getvalue(), "image/jpeg")}
            ).json()
    [result] = answer["results"]
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["mask"]["data"]))))
    shown = dict(result, mask={"format": "png", "data": result["mask"]["data"][:24] + "..."})
    print(json.dumps(dict(answer, results=[shown]), indent=2))
    palette_image = Image.fromarray(mask, mode="P")
    palette_image.putpalette(
        Image.open(io.BytesIO(base64.b64decode(result["mask"]["data"]))).getpalette() or []
    )
    figure = Figure(figsize=(12, 3.6))
    classes = ", ".join(f"{c['label']} {c['fraction']:.1%}" for c in result["classes"])
    figure.suptitle(f"POST /segment ({answer['model']['name']}) on {args.photo}: {classes}")
    panels = (np.asarray(photo), np.asarray(palette_image.convert("RGB")), overlay(photo, mask))
    for index, (panel, title) in enumerate(
        zip(panels, ("upload", "mask (PNG answer)", "mask over photo"), strict=True)
    ):
        axes = figure.add_subplot(1, 3, index + 1)
        axes.imshow(panel)
        axes.set_title(title, fontsize=9)
        axes.axis("off")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(figure, args.out)


if __name__ == "__main__":
    main()
