"""A lone batch borrows the idle cores: more intra-op threads while no other worker has work.

Under load each core runs its own single-threaded worker (`device.plan_threads`), which is the
fastest layout for throughput. A lone request would then use one core of many; when no worker
of any model is busy and nothing else is queued or on its way, its batch runs with every core's
intra-op thread and the worker gives them back when it ends. torch's thread count is per OS
thread (OpenMP's per-thread setting), so the other workers keep theirs.
"""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class BusyWorkers:
    """How many inference workers, of every model, are running a batch now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = 0

    @contextmanager
    def running(self) -> Iterator[bool]:
        """Count this worker as busy for the block; yields whether it is the only one."""
        with self._lock:
            self._busy += 1
            alone = self._busy == 1
        try:
            yield alone
        finally:
            with self._lock:
                self._busy -= 1


@contextmanager
def intra_op_threads(threads: int) -> Iterator[None]:
    """Run the block with at least `threads` intra-op threads in this OS thread, then restore."""
    previous = torch.get_num_threads()
    if threads <= previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def pin_intra_op_threads(threads: int) -> None:
    """Give this OS thread its own intra-op count, kept whatever the process-wide one becomes."""
    # torch sets a thread's count lazily, from the process-wide one, at its first query or op
    # (at::internal::lazy_init_num_threads); set before that, it would be overwritten then.
    torch.get_num_threads()
    torch.set_num_threads(threads)


def lower_thread_priority(steps: int) -> None:
    """Run this OS thread (and the OpenMP threads it starts) `steps` nice levels lower.

    Compute threads then yield the CPU to the event loop when it has work, so accepting,
    parsing and refusing requests waits less behind decoding and forward passes on a saturated
    machine; when the loop is idle they still get every free cycle. Linux applies a thread id
    given to setpriority to that thread alone; raising one's own nice value needs no privilege.
    """
    if steps <= 0 or not hasattr(os, "setpriority"):
        return
    thread = threading.get_native_id()
    os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + steps)
