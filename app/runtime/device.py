"""Resolve the configured device string to a torch.device, loudly."""

import logging
import os

import torch

logger = logging.getLogger(__name__)


class DeviceUnavailable(RuntimeError):
    """The configured CUDA device is not present: we never fall back to CPU silently."""


def resolve_device(setting: str) -> torch.device:
    """`auto` picks CUDA when present; an explicit `cuda[:N]` must exist."""
    if setting == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(setting)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceUnavailable(f"VISION_DEVICE={setting} but CUDA is not available")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"VISION_DEVICE={setting} but only {torch.cuda.device_count()} GPU(s) are visible"
            )
    logger.info("inference device: %s (%s)", device, describe_device(device))
    return device


def describe_device(device: torch.device) -> str:
    """A human name for the device, for logs and /models."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu, {torch.get_num_threads()} intra-op threads"


def plan_threads(
    device: torch.device, inference_threads: int, torch_threads: int
) -> tuple[int, int]:
    """(inference workers per model, intra-op threads), filling in the automatic (0) values.

    On CPU, one single-threaded inference worker per core beats one multi-threaded one:
    OpenMP teams stall at every barrier whenever another thread (decoding, HTTP, a neighbour)
    takes a core, which halves throughput on small shared machines. One GPU: one worker.
    """
    cores = os.cpu_count() or 1
    workers = inference_threads or (1 if device.type == "cuda" else cores)
    return workers, torch_threads or max(1, cores // workers)
