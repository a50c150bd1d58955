"""The update step every task shares: AMP, channels_last, gradient clipping, throughput."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from training.core.config import RunConfig, Switch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepSettings:
    """How tensors reach the model: device, mixed precision, memory format, clipping."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    clip_grad_norm: float = 0.0
    progress: bool = True

    def move(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Copy a batch to the device (asynchronously from pinned memory on CUDA)."""
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, targets.to(self.device, non_blocking=True)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling, on only for fp16 autocast (bf16 and fp32 need none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def autocast(self) -> torch.autocast:
        """bf16/fp16 autocast on CUDA when AMP is on; a no-op context otherwise."""
        dtype = self.amp_dtype or torch.float32
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.amp_dtype is not None)


@dataclass(frozen=True)
class Updater:
    """What turns gradients into a weight update: optimizer, per-step schedule, scaler."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler


def step_settings(config: RunConfig, device: torch.device, channels_last: Switch) -> StepSettings:
    """AMP (bf16 where supported, else fp16 with a scaler) and channels_last: `auto` = on CUDA."""
    cuda = device.type == "cuda"
    amp = config.amp == "on" or (config.amp == "auto" and cuda)
    amp_dtype = None
    if amp:
        bf16 = not cuda or torch.cuda.is_bf16_supported()
        amp_dtype = torch.bfloat16 if bf16 else torch.float16
    memory = channels_last == "on" or (channels_last == "auto" and cuda)
    return StepSettings(device, amp_dtype, memory, config.clip_grad_norm, config.progress)


def require_finite(loss: torch.Tensor) -> None:
    """Stop the run with advice rather than let a NaN or inf loss poison the weights.

    It reads the loss on the host, so on CUDA callers do it only where they sync anyway.
    """
    if not math.isfinite(float(loss.detach())):
        raise FloatingPointError(
            "the training loss is not finite; lower --lr or set --clip-grad-norm"
        )


def apply_gradients(
    loss: torch.Tensor, model: nn.Module, updater: Updater, clip_grad_norm: float
) -> None:
    """One optimisation step: backward (scaled for fp16), optional clipping, step, schedule."""
    optimizer, scaler = updater.optimizer, updater.scaler
    optimizer.zero_grad(set_to_none=True)
    torch.autograd.backward(scaler.scale(loss))
    if clip_grad_norm > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    updater.scheduler.step()


class Throughput:
    """The speed of an epoch's record (a dataclass with `images` and `seconds` fields)."""

    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        """Images trained per second (of the whole world, under DDP)."""
        return self.images / max(self.seconds, 1e-9)
