"""One segmentation training pass and one scored evaluation, with progress and DDP sums."""

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from app.runtime.segmentation import class_map
from training.core.distributed import all_reduce_sum
from training.core.engine import StepSettings, Throughput, Updater, apply_gradients, require_finite
from training.segmentation.data import IGNORE_INDEX
from training.segmentation.metrics import SegmentationMetrics, SegmentationScorer
from training.segmentation.models import upsample_logits

_POSTFIX_EVERY = 10


@dataclass(frozen=True, kw_only=True)
class SegmentationEpoch(Throughput):
    """Training loss and pixel accuracy over one epoch (all ranks), and its speed."""

    loss: float
    pixel_accuracy: float
    images: int
    seconds: float


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Pixel-wise cross-entropy at the masks' size; 255 pixels are ignored."""
    scaled = upsample_logits(logits.float(), (masks.shape[-2], masks.shape[-1]))
    return nn.functional.cross_entropy(scaled, masks, ignore_index=IGNORE_INDEX)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    updater: Updater,
    settings: StepSettings,
    description: str,
) -> SegmentationEpoch:
    """Train for one pass over `loader`, stepping the schedule every batch."""
    model.train()
    sums = torch.zeros(4, dtype=torch.float64, device=settings.device)  # loss, hits, pixels, n
    started = time.perf_counter()
    bar = tqdm(loader, desc=description, unit="batch", disable=not settings.progress, leave=False)
    for step, (batch_images, batch_masks) in enumerate(bar):
        images, masks = settings.move(batch_images, batch_masks)
        with settings.autocast():
            logits = model(images)
        loss = segmentation_loss(logits, masks)
        apply_gradients(loss, model, updater, settings.clip_grad_norm)
        with torch.no_grad():
            size = (masks.shape[-2], masks.shape[-1])
            predicted = upsample_logits(logits.detach().float(), size).argmax(dim=1)
            valid = masks != IGNORE_INDEX
            hits = ((predicted == masks) & valid).sum()
        row = [loss.detach().double() * len(masks), hits.double(), valid.sum().double()]
        sums += torch.stack([*row, sums.new_tensor(len(masks))])
        if step % _POSTFIX_EVERY == 0:
            require_finite(loss)
            loss_sum, hit_sum, pixel_sum, count = sums.tolist()
            lr = updater.optimizer.param_groups[0]["lr"]
            bar.set_postfix(
                loss=f"{loss_sum / max(count, 1):.4f}",
                acc=f"{hit_sum / max(pixel_sum, 1):.3f}",
                lr=f"{lr:.2e}",
            )
    all_reduce_sum(sums)
    loss_sum, hit_sum, pixel_sum, count = sums.tolist()
    if not math.isfinite(loss_sum):
        raise FloatingPointError("the training loss is not finite; lower --lr")
    return SegmentationEpoch(
        loss=loss_sum / max(count, 1),
        pixel_accuracy=hit_sum / max(pixel_sum, 1),
        images=int(count),
        seconds=time.perf_counter() - started,
    )


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, list[torch.Tensor]]],
    labels: tuple[str, ...],
    settings: StepSettings,
    description: str = "eval",
) -> SegmentationMetrics:
    """Scores of `model` on served inputs against full-size masks (summed over ranks)."""
    model.eval()
    scorer = SegmentationScorer(labels)
    bar = tqdm(loader, desc=description, unit="batch", disable=not settings.progress, leave=False)
    with torch.inference_mode():
        for images, masks in bar:
            with settings.autocast():
                logits = model(images.to(settings.device)).float().cpu()
            for index, mask in enumerate(masks):
                predicted = class_map(logits[index], mask.shape[0], mask.shape[1])
                scorer.update(predicted, mask)
    return scorer.compute()
