"""One pass of detector training, and predictions in COCO form for scoring."""

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from training.core.distributed import all_reduce_sum
from training.core.engine import StepSettings, Throughput, Updater, apply_gradients, require_finite
from training.detection.data import Target

_POSTFIX_EVERY = 5


@dataclass(frozen=True, kw_only=True)
class DetectionEpochStats(Throughput):
    """Mean loss (and its parts) over one epoch, and its speed."""

    loss: float
    parts: dict[str, float]
    images: int
    seconds: float


def train_one_epoch(
    detector: nn.Module,
    loader: Iterable[tuple[Sequence[torch.Tensor], Sequence[Target]]],
    optimization: Updater,
    settings: StepSettings,
    description: str,
) -> DetectionEpochStats:
    """Train the float-input torchvision detector for one pass, stepping the schedule per batch."""
    detector.train()
    sums: dict[str, float] = {}
    images_seen = 0
    started = time.perf_counter()
    bar = tqdm(loader, desc=description, unit="batch", disable=not settings.progress, leave=False)
    for step, (batch_images, batch_targets) in enumerate(bar):
        images = [
            image.to(settings.device, non_blocking=True).float() / 255.0 for image in batch_images
        ]
        targets = [{k: v.to(settings.device) for k, v in t.items()} for t in batch_targets]
        with settings.autocast():
            losses: dict[str, torch.Tensor] = detector(images, targets)
        loss = torch.stack(list(losses.values())).sum()
        require_finite(loss)
        apply_gradients(loss, detector, optimization, settings.clip_grad_norm)
        images_seen += len(images)
        for name, value in {"loss": loss, **losses}.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach()) * len(images)
        if step % _POSTFIX_EVERY == 0:
            lr = optimization.optimizer.param_groups[0]["lr"]
            bar.set_postfix(loss=f"{sums['loss'] / images_seen:.4f}", lr=f"{lr:.2e}")
    # Under DDP the epoch's numbers are the whole world's: sum every rank's sums and images.
    names = sorted(sums)
    totals = all_reduce_sum(
        torch.tensor([images_seen, *(sums[n] for n in names)], dtype=torch.float64)
    )
    images_seen = int(totals[0])
    means = {
        name: float(total) / max(images_seen, 1)
        for name, total in zip(names, totals[1:], strict=True)
    }
    loss_mean = means.pop("loss", float("nan"))
    seconds = time.perf_counter() - started
    return DetectionEpochStats(loss=loss_mean, parts=means, images=images_seen, seconds=seconds)


def predict(
    module: nn.Module | torch.jit.ScriptModule,
    loader: Iterable[tuple[Sequence[torch.Tensor], Sequence[torch.Tensor], Sequence[int]]],
    label_to_category: Sequence[int],
    *,
    device: torch.device,
    progress: bool = True,
    description: str = "predict",
) -> list[dict[str, Any]]:
    """COCO result entries for every image, boxes scaled back to the original image's pixels.

    `module` takes uint8 images (the exported form); `label_to_category[k]` is the data's
    category id of model label k.
    """
    if isinstance(module, nn.Module):
        module.eval()
    results: list[dict[str, Any]] = []
    bar = tqdm(loader, desc=description, unit="batch", disable=not progress, leave=False)
    with torch.inference_mode():
        for pixels, scales, image_ids in bar:
            outputs = module([image.to(device) for image in pixels])
            for output, scale, image_id in zip(outputs, scales, image_ids, strict=True):
                results += coco_results(output, scale, int(image_id), label_to_category)
    return results


def coco_results(
    output: dict[str, torch.Tensor],
    scale: torch.Tensor,
    image_id: int,
    label_to_category: Sequence[int],
) -> list[dict[str, Any]]:
    """One image's detections as COCO entries (xywh in original pixels)."""
    boxes = output["boxes"].float().cpu() * scale
    boxes[:, 2:] -= boxes[:, :2]
    return [
        {
            "image_id": image_id,
            "category_id": int(label_to_category[int(label)]),
            "bbox": [round(v, 2) for v in box],
            "score": round(float(score), 5),
        }
        for box, score, label in zip(
            boxes.tolist(), output["scores"].cpu(), output["labels"].cpu(), strict=True
        )
    ]
