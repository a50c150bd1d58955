"""Heat maps for explain=true: an activation map laid over the upright upload, as a grey PNG.

The model's maps cover its input tensor: for a centre-cropped model, the crop of the resized
image. The map is scaled onto that region of the upload (in upright pixels) and the rest stays 0,
so the PNG has the upload's size and every pixel lines up with the photo the client sent.
"""

import base64
import io

import anyio
import torch
from PIL import Image

from app.errors import CannotExplain
from app.runtime.card import InputSpec
from app.runtime.registry import ServedModel
from app.schemas import HeatMap

Box = tuple[float, float, float, float]


def require_explaining(served: ServedModel) -> None:
    """409 unless the model returns activation maps."""
    if not served.card.explains:
        raise CannotExplain(
            f"Model {served.name!r} returns no activation maps (its card's `outputs`), so it "
            "cannot explain; re-export it with python -m training export.",
            model=served.name,
        )


def similarity_map(embedding_map: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Each cell's share of the cosine similarity to `reference` (they sum to it)."""
    return torch.einsum("dhw,d->hw", embedding_map, reference.float())


async def heat_map(activation: torch.Tensor, width: int, height: int, spec: InputSpec) -> HeatMap:
    """The PNG heat map, drawn on a worker thread (a large upload makes a large PNG)."""
    data = await anyio.to_thread.run_sync(render_heat_map, activation, width, height, spec)
    return HeatMap(data=data)


def render_heat_map(activation: torch.Tensor, width: int, height: int, spec: InputSpec) -> str:
    """Base64 PNG of `width` x `height`: 255 where the evidence is strongest, 0 where none."""
    positive = activation.float().clamp_min(0)
    peak = float(positive.max())
    scaled = positive / peak * 255 if peak > 0 else positive
    tile = Image.fromarray(scaled.round().to(torch.uint8).numpy(), mode="L")
    left, top, right, bottom = input_box(width, height, spec)
    size = (max(1, round(right - left)), max(1, round(bottom - top)))
    canvas = Image.new("L", (width, height), 0)
    canvas.paste(tile.resize(size, Image.Resampling.BILINEAR), (round(left), round(top)))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def input_box(width: int, height: int, spec: InputSpec) -> Box:
    """The region of the upright upload that the model's input tensor shows."""
    if spec.resize_mode != "shorter_side" or spec.crop_size is None:
        return 0.0, 0.0, float(width), float(height)  # stretched (or uncropped): all of it
    scale = min(width, height) / spec.resize_size  # upload pixels per resized pixel
    # torchvision: the shorter side becomes resize_size, the longer int(resize_size * ratio).
    resized_w = spec.resize_size if width <= height else int(spec.resize_size * width / height)
    resized_h = spec.resize_size if height <= width else int(spec.resize_size * height / width)
    crop = spec.crop_size
    left = round((resized_w - crop) / 2.0) * scale
    top = round((resized_h - crop) / 2.0) * scale
    return left, top, left + crop * scale, top + crop * scale
