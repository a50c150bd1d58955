"""DistributedDataParallel plumbing: process group, samplers that shard, sums across ranks.

`torchrun --nproc_per_node=N -m training train ...` sets the rendezvous variables; a plain
`python -m training train` runs as a world of one and every helper here becomes a no-op.
"""

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from app.runtime.device import resolve_device

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the world and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only rank 0 logs results and writes files."""
        return self.rank == 0


def init_distributed(device_setting: str) -> DistContext:
    """Join the process group when launched by torchrun; pick this rank's device."""
    if not dist.is_torchelastic_launched():
        return DistContext(0, 1, resolve_device(device_setting))
    # torchrun's contract: LOCAL_RANK says which GPU of this machine is ours.
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_setting)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    context = DistContext(dist.get_rank(), dist.get_world_size(), device)
    logger.info("rank %d of %d on %s", context.rank, context.world_size, device)
    return context


def close_distributed() -> None:
    """Leave the process group, if we joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks, in place (a no-op in a world of one)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm statistics), so all evaluate one model.

    DDP syncs buffers at the start of each forward, but each rank's last training step then
    updates its own copy; without this, rank 1 would evaluate slightly different statistics.
    """
    if dist.is_available() and dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def gather_lists(items: list[T]) -> list[T]:
    """Every rank's items, concatenated in rank order, on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return items
    parts: list[list[T] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part or []]


def barrier() -> None:
    """Wait for every rank."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class EpochSampler(Sampler[int]):
    """This rank's share of a seeded epoch: a shuffle, or a class-balanced draw with replacement.

    Every rank draws the same permutation (seed + epoch) and takes every world_size-th index,
    padded so all ranks run the same number of steps, as DDP requires.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.weights = torch.tensor(weights, dtype=torch.float64) if weights is not None else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order to produce."""
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.size + self.world_size - 1) // self.world_size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.multinomial(self.weights, self.size, True, generator=generator)
        padded = order.tolist()
        padded += padded[: len(self) * self.world_size - self.size]
        return iter(padded[self.rank :: self.world_size])


class ShardSampler(Sampler[int]):
    """Every world_size-th index, no padding: each image is evaluated exactly once overall."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, size, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def broadcast_path(path: Path | None) -> Path:
    """Rank 0's path, on every rank (the run folder only rank 0 may choose)."""
    payload = [path]
    if dist.is_available() and dist.is_initialized():
        dist.broadcast_object_list(payload, src=0)
    if payload[0] is None:
        raise RuntimeError("rank 0 did not provide a path")
    return payload[0]
