"""DynamicBatcher: gathering, one output per input, overload, failures."""

import asyncio
import threading
import time

import pytest

from app.errors import NotReady, Overloaded
from app.runtime.batching import BatchPolicy, DynamicBatcher

pytestmark = pytest.mark.anyio


def doubling_batcher(
    batches: list[list[int]], policy: BatchPolicy, gate: threading.Event | None = None
) -> DynamicBatcher[int, int]:
    def run(items: list[int]) -> list[int]:
        if gate is not None:
            gate.wait(5)
        batches.append(items)
        return [item * 2 for item in items]

    return DynamicBatcher("double", run, policy)


async def test_concurrent_submissions_share_one_call() -> None:
    batches: list[list[int]] = []
    batcher = doubling_batcher(
        batches, BatchPolicy(max_batch_size=4, max_wait_s=1.0, queue_limit=8)
    )
    batcher.start()
    batcher.expect(4)  # four requests are being decoded

    async def arrive(n: int) -> list[int]:
        await asyncio.sleep(0.01 * n)
        batcher.expect(-1)
        return await batcher.submit_many([n])

    try:
        results = await asyncio.gather(*(arrive(n) for n in range(4)))
    finally:
        batcher.stop()
    assert results == [[0], [2], [4], [6]]
    assert [sorted(batch) for batch in batches] == [[0, 1, 2, 3]]


async def test_batches_are_capped_at_the_max_size() -> None:
    batches: list[list[int]] = []
    batcher = doubling_batcher(
        batches, BatchPolicy(max_batch_size=3, max_wait_s=0.2, queue_limit=8)
    )
    batcher.start()
    try:
        assert await batcher.submit_many(list(range(7))) == [0, 2, 4, 6, 8, 10, 12]
    finally:
        batcher.stop()
    assert [len(batch) for batch in batches] == [3, 3, 1]


async def test_full_queue_is_refused_at_once() -> None:
    gate = threading.Event()
    batcher = doubling_batcher(
        [], BatchPolicy(max_batch_size=1, max_wait_s=0.0, queue_limit=2), gate
    )
    batcher.start()
    try:
        first = asyncio.ensure_future(batcher.submit_many([1, 2]))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded):
            await batcher.submit_many([3])
        gate.set()
        assert await first == [2, 4]
        assert await batcher.submit_many([3]) == [6]  # capacity is given back
    finally:
        gate.set()
        batcher.stop()


async def test_a_failing_batch_fails_its_items_and_the_next_batch_works() -> None:
    calls = 0

    def run(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return items

    batcher = DynamicBatcher(
        "flaky", run, BatchPolicy(max_batch_size=4, max_wait_s=0.0, queue_limit=8)
    )
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit_many([1])
        assert await batcher.submit_many([5]) == [5]
    finally:
        batcher.stop()


async def test_a_wrong_number_of_outputs_is_an_error() -> None:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        "lossy",
        lambda items: items[:-1],
        BatchPolicy(max_batch_size=2, max_wait_s=1.0, queue_limit=8),
    )
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="2 inputs gave 1 outputs"):
            await batcher.submit_many([1, 2])
    finally:
        batcher.stop()


async def test_stopped_batcher_refuses_work() -> None:
    batcher = doubling_batcher([], BatchPolicy(max_batch_size=1, max_wait_s=0.0, queue_limit=1))
    with pytest.raises(NotReady):
        await batcher.submit_many([1])


async def test_a_lone_item_is_not_held_for_company_that_is_not_coming() -> None:
    batches: list[list[int]] = []
    batcher = doubling_batcher(
        batches, BatchPolicy(max_batch_size=8, max_wait_s=5.0, queue_limit=8)
    )
    batcher.start()
    try:
        started = time.perf_counter()
        assert await batcher.submit_many([21]) == [42]
        assert time.perf_counter() - started < 1.0
    finally:
        batcher.stop()


async def test_several_workers_run_batches_at_the_same_time() -> None:
    both_running = threading.Barrier(2, timeout=5)

    def run(items: list[int]) -> list[int]:
        both_running.wait()  # only passes when two batches are in flight together
        return items

    policy = BatchPolicy(max_batch_size=1, max_wait_s=0.0, queue_limit=8, threads=2)
    batcher: DynamicBatcher[int, int] = DynamicBatcher("pair", run, policy)
    batcher.start()
    try:
        assert list(await asyncio.gather(batcher.submit_many([1]), batcher.submit_many([2]))) == [
            [1],
            [2],
        ]
    finally:
        batcher.stop()


async def test_a_worker_filling_its_batch_never_waits_past_the_deadline() -> None:
    """Bursts of announced items into two workers while another thread holds the GIL often.

    With queue.SimpleQueue, the worker filling a batch could sleep for good in get(timeout)
    when the other worker took the item that woke it after the deadline; its batch then waited
    for some later put (CI: 504s after a drain). With SimpleQueue this test failed in 6 of 8
    runs; each burst must finish in milliseconds, not hang.
    """
    stop_hogging = threading.Event()

    def hold_the_gil() -> None:  # makes a woken worker wait for the GIL past its deadline
        while not stop_hogging.is_set():
            sum(range(1000))

    def run(items: list[int]) -> list[int]:
        sum(range(3000))  # a forward pass that holds the GIL a while
        return items

    policy = BatchPolicy(max_batch_size=8, max_wait_s=0.0005, queue_limit=64, threads=2)
    batcher: DynamicBatcher[int, int] = DynamicBatcher("bursts", run, policy)
    hog = threading.Thread(target=hold_the_gil, daemon=True)
    batcher.start()
    hog.start()

    async def arrive(item: int) -> list[int]:
        await asyncio.sleep(0.0002 * (item % 3))
        batcher.expect(-1)
        return await batcher.submit_many([item])

    try:
        for _ in range(400):
            batcher.expect(5)  # five requests being decoded: the workers wait for them
            async with asyncio.timeout(5):  # a burst takes milliseconds; 5 s means it hung
                answers = await asyncio.gather(*(arrive(item) for item in range(5)))
            assert answers == [[0], [1], [2], [3], [4]]
    finally:
        stop_hogging.set()
        batcher.stop()
        hog.join()
