"""Resolve the configured device string to a torch.device, loudly."""

import logging
import math
import os
from pathlib import Path

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
    logger.info("inference device: %s", device)
    return device


def describe_device(device: torch.device) -> str:
    """A human name for the device, for logs and /models."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu, {torch.get_num_threads()} intra-op threads"


def plan_threads(
    device: torch.device, inference_threads: int, torch_threads: int, processes: int = 1
) -> tuple[int, int]:
    """(inference workers per model, intra-op threads), filling in the automatic (0) values.

    On CPU, one single-threaded inference worker per core beats one multi-threaded one:
    OpenMP teams stall at every barrier whenever another thread (decoding, HTTP, a neighbour)
    takes a core, which halves throughput on small shared machines. One GPU: one worker.
    With several serving processes (WORKERS) each plans for its share of the cores.
    """
    cores = cores_per_process(processes)
    workers = inference_threads or (1 if device.type == "cuda" else cores)
    return workers, torch_threads or max(1, cores // workers)


def plan_lone_threads(
    device: torch.device, torch_threads: int, lone_threads: int, processes: int = 1
) -> int:
    """Intra-op threads for a batch running alone: the setting, 0 = every core on a CPU (the
    process's share of them with several serving processes).

    Never fewer than the workers' own; on CUDA the forward pass runs on the GPU, so none.
    """
    if device.type == "cuda":
        return torch_threads
    return max(torch_threads, lone_threads or cores_per_process(processes))


def cores_per_process(processes: int) -> int:
    """This process's share of the cores when `processes` serving processes share them."""
    return max(1, available_cores() // processes)


def available_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota.

    In a container `os.cpu_count()` is the host's count; `--cpuset-cpus` shows in the affinity
    mask and `--cpus` only in the cgroup quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`).
    """
    cores = len(os.sched_getaffinity(0))
    quota = _cgroup_quota(cgroup)
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota(cgroup: Path) -> float | None:
    try:
        if (cgroup / "cpu.max").is_file():
            limit, period = (cgroup / "cpu.max").read_text().split()[:2]
            return None if limit == "max" else int(limit) / int(period)
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 else None
