"""A lone batch borrows the idle cores: more intra-op threads while no other worker has work.

Under load each core runs its own single-threaded worker (`device.plan_threads`), which is the
fastest layout for throughput. A lone request would then use one core of many; when no worker
of any model is busy and nothing else is queued or on its way, its batch runs with every core's
intra-op thread.

Every lone batch, of every model, runs on ONE thread of the process (`lone_batch_executor`),
not on the worker that took it. OpenMP (libgomp) keeps a team of helper threads per thread that
ever ran a parallel region wider than one; once the helpers of all teams outnumber the cores,
libgomp stops spinning between regions (its "throttled" spin count, 100) and every convolution
then waits to wake its helper. `python -m bench.lone_threads` (ResNet-18, batch 1, two threads):
23.8 ms when one thread ever ran wide, 35.0 ms when two threads took turns (one thread: 37.5).
"""

import functools
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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


_LONE_EXECUTOR_LOCK = threading.Lock()


def lone_batch_executor(threads: int, nice: int) -> ThreadPoolExecutor:
    """The process's one thread for batches that run alone, with `threads` intra-op threads.

    Every model's workers get the same thread (the plan is the process's, so the arguments are
    the same for all of them).
    """
    with _LONE_EXECUTOR_LOCK:
        return _lone_batch_executor(threads, nice)


@functools.cache
def _lone_batch_executor(threads: int, nice: int) -> ThreadPoolExecutor:
    executor = ThreadPoolExecutor(
        max_workers=1,
        thread_name_prefix="lone-batch",
        initializer=prepare_compute_thread,
        initargs=(threads, nice),
    )
    own = torch.get_num_threads()
    executor.submit(int).result()  # start the thread: it sets its own count...
    # ...and torch.set_num_threads also sets the count every later thread starts with: put
    # that back (the call sets this thread's own count too, to what it already was).
    torch.set_num_threads(own)
    return executor


def prepare_compute_thread(intra_op_threads: int, nice: int) -> None:
    """Set up an inference, decode or lone-batch thread as it starts: its own intra-op count
    (0 = torch's process-wide one) and its priority `nice` steps below the event loop."""
    lower_thread_priority(nice)
    if intra_op_threads:
        pin_intra_op_threads(intra_op_threads)


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
