"""Dynamic batching: gather concurrent requests into one call on dedicated worker threads.

The event loop only enqueues and awaits; the worker threads are the only place model code runs.
Several workers may share one queue (like model instances in Triton): on a CPU, one
single-threaded worker per core keeps every core busy with no load imbalance.
The queue is bounded so overload is answered at once (503) instead of with growing latency;
callers check for room as each upload begins to arrive and reserve before decoding, so a
refusal wastes no work.
"""

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from app.errors import NotReady, Overloaded
from app.request_context import current_request_id
from app.runtime.threads import (
    BusyWorkers,
    lone_batch_executor,
    prepare_compute_thread,
)

logger = logging.getLogger(__name__)

# Every model's workers: a lone batch borrows idle cores only when no other batch is running.
_BUSY_WORKERS = BusyWorkers()

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchRecord:
    """One forward pass, as the metrics see it."""

    size: int
    forward_s: float  # the batch function: forward pass and postprocessing
    queued_s: tuple[float, ...]  # per item: from its enqueueing to the start of its batch


BatchObserver = Callable[[BatchRecord], None]


@dataclass(slots=True)
class _Pending(Generic[In, Out]):
    item: In
    future: "asyncio.Future[Out]"
    loop: asyncio.AbstractEventLoop
    enqueued: float  # time.perf_counter()
    request_id: str | None  # the request it came with, for the batch's log lines


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """How long and how large batches may grow, and how many items may wait."""

    max_batch_size: int
    max_wait_s: float
    queue_limit: int
    threads: int = 1  # workers taking batches from the one queue (model instances)
    # Intra-op threads for a batch that runs alone (no worker of any model busy, nothing else
    # queued or on its way); 0 or 1 = keep the worker's own.
    lone_threads: int = 0
    # Each worker's own intra-op threads, set as it starts (0 = as the process has them): a
    # thread otherwise takes torch's process-wide count at its first op, whatever it is then.
    own_threads: int = 0
    nice: int = 0  # the workers' priority below the event loop (runtime/threads.py)


@dataclass(kw_only=True, slots=True)
class Reservation:
    """Queue slots held for one request; slots not used by `submit_many` are given back."""

    held: int


class DynamicBatcher(Generic[In, Out]):
    """Runs `run_batch(items) -> outputs` (one output per item) on gathered items."""

    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[In]], Sequence[Out]],
        policy: BatchPolicy,
        observe_batch: BatchObserver | None = None,
    ) -> None:
        self.name = name
        self._run_batch = run_batch
        self._policy = policy
        self._observe_batch = observe_batch
        # queue.Queue, not SimpleQueue: CPython's SimpleQueue.get(timeout=t) can block for good
        # when another worker takes the item that woke it after t ran out (its C loop then
        # waits with a negative, i.e. endless, timeout). The worker filling a batch then holds
        # that batch until some later put happens to wake it: in CI, requests already taken
        # got 504 after a drain (tests/unit/test_batching.py reproduces it).
        self._queue: queue.Queue[_Pending[In, Out] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._incoming = 0
        self._accepting = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"batcher-{name}-{index}", daemon=True)
            for index in range(policy.threads)
        ]

    @property
    def policy(self) -> BatchPolicy:
        """The limits in force."""
        return self._policy

    def resize(self, max_batch_size: int) -> None:
        """Change the largest batch; only before `start`."""
        if self._accepting:
            raise RuntimeError("resize a batcher before starting it")
        self._policy = replace(self._policy, max_batch_size=max_batch_size)

    @property
    def waiting(self) -> int:
        """Items queued or in the current batch."""
        return self._waiting

    def start(self) -> None:
        """Start the worker threads."""
        self._accepting = True
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Refuse new work, finish what is queued, and join the workers."""
        self._accepting = False
        for _ in self._threads:
            self._queue.put(None)  # one stop sign per worker, behind the queued work
        for thread in self._threads:
            thread.join(timeout_s)

    def refuse_if_full(self) -> None:
        """Raise Overloaded now if not even one more item fits (before a body is read)."""
        if self._waiting >= self._policy.queue_limit:
            raise self._overloaded()

    @contextmanager
    def reserve(self, count: int) -> Iterator[Reservation]:
        """Hold `count` queue slots (or raise Overloaded at once) until the block ends."""
        self._reserve(count)
        reservation = Reservation(held=count)
        try:
            yield reservation
        finally:
            self._release(reservation.held)

    def refuse_unless_room(self, count: int) -> None:
        """Raise Overloaded now unless `count` more items would fit in the queue.

        A request reading its uploads asks as each image begins, so overload is refused within
        one image's bytes; it reserves only once the body is read, so slots are never held by
        bytes still on the wire (holding them cost a quarter of the throughput under overload).
        """
        if self._waiting + count > self._policy.queue_limit:
            raise self._overloaded()

    async def submit_many(
        self, items: Sequence[In], reservation: Reservation | None = None
    ) -> list[Out]:
        """Enqueue all items at once (or none) and wait for their outputs, in order.

        With a reservation, the items use its slots; without one, they are reserved here.
        """
        if not items:
            return []
        if reservation is None:
            self._reserve(len(items))
        elif len(items) > reservation.held:
            raise ValueError(f"{len(items)} items for {reservation.held} reserved slots")
        else:
            reservation.held -= len(items)  # the worker frees these slots once they ran
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Out]] = [loop.create_future() for _ in items]
        now, request_id = time.perf_counter(), current_request_id()
        for item, future in zip(items, futures, strict=True):
            self._queue.put(_Pending(item, future, loop, now, request_id))
        try:
            return list(await asyncio.gather(*futures))
        finally:
            for future in futures:
                future.cancel()  # a no-op for settled ones; the worker skips the rest

    def expect(self, count: int) -> None:
        """Announce `count` items being prepared (negative: they arrived or were dropped)."""
        with self._lock:
            self._incoming += count

    def _reserve(self, count: int) -> None:
        if not self._accepting:
            raise NotReady(f"model {self.name!r} is not accepting work (starting or stopping)")
        with self._lock:
            if self._waiting + count > self._policy.queue_limit:
                raise self._overloaded()
            self._waiting += count

    def _overloaded(self) -> Overloaded:
        return Overloaded(
            f"The queue for model {self.name!r} is full; retry shortly.",
            queue_limit=self._policy.queue_limit,
        )

    def _release(self, count: int) -> None:
        with self._lock:
            self._waiting -= count

    def _serve(self) -> None:
        prepare_compute_thread(self._policy.own_threads, self._policy.nice)
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            self._execute(batch)
            if stop:
                return

    def _gather(self, first: _Pending[In, Out]) -> tuple[list[_Pending[In, Out]], bool]:
        batch = [first]
        deadline = time.monotonic() + self._policy.max_wait_s
        while len(batch) < self._policy.max_batch_size:
            remaining = deadline - time.monotonic()
            # Wait only for items that are on their way (being decoded): a lone request is
            # never held back for company that is not coming.
            wait = remaining > 0 and self._incoming > 0
            try:
                pending = self._queue.get(timeout=remaining) if wait else self._queue.get_nowait()
            except queue.Empty:
                break
            if pending is None:
                return batch, True
            batch.append(pending)
        return batch, False

    def _execute(self, batch: list[_Pending[In, Out]]) -> None:
        live = [pending for pending in batch if not pending.future.done()]
        outputs: Sequence[Out] = ()
        error: Exception | None = None
        started = time.perf_counter()
        try:
            if live:
                outputs = self._run([pending.item for pending in live])
                if len(outputs) != len(live):
                    raise RuntimeError(f"{len(live)} inputs gave {len(outputs)} outputs")
        except Exception as failure:  # a failed batch fails its callers, not the worker
            logger.exception(
                "batch of %d failed in model %r (requests %s)",
                len(live),
                self.name,
                _request_ids(live),
            )
            error = failure
        # Book-keeping first, so a caller that sees its answer also sees it counted.
        if live and error is None:
            logger.debug(
                "model %r: batch of %d in %.1f ms (requests %s)",
                self.name,
                len(live),
                (time.perf_counter() - started) * 1000,
                _request_ids(live),
            )
        if live and error is None and self._observe_batch is not None:
            record = BatchRecord(
                size=len(live),
                forward_s=time.perf_counter() - started,
                queued_s=tuple(started - pending.enqueued for pending in live),
            )
            self._observe_batch(record)
        with self._lock:
            self._waiting -= len(batch)
        for index, pending in enumerate(live):
            _settle(pending, None if error else outputs[index], error)

    def _run(self, items: list[In]) -> Sequence[Out]:
        if self._policy.lone_threads <= 1:  # off (the default): no book-keeping per batch
            return self._run_batch(items)
        with _BUSY_WORKERS.running() as alone:
            if not (alone and self._queue.empty() and self._incoming == 0):
                return self._run_batch(items)
            # Handed to the process's one lone-batch thread (runtime/threads.py says why).
            lone = lone_batch_executor(self._policy.lone_threads, self._policy.nice)
            return lone.submit(self._run_batch, items).result()


def _request_ids(batch: list[_Pending[In, Out]]) -> str:
    return ", ".join(dict.fromkeys(str(pending.request_id) for pending in batch))


def _settle(pending: _Pending[In, Out], output: Out | None, error: BaseException | None) -> None:
    def settle() -> None:
        if pending.future.done():
            return
        if error is not None:
            pending.future.set_exception(error)
        else:
            pending.future.set_result(output)  # type: ignore[arg-type]

    try:
        pending.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the caller's event loop has closed; nobody is waiting any more
        logger.debug("dropped a result for a closed event loop")
