"""A batch that runs alone borrows the idle cores' intra-op threads; concurrent ones do not."""

import asyncio
import threading

import pytest
import torch

from app.runtime.batching import BatchPolicy, DynamicBatcher
from app.runtime.device import plan_lone_threads
from app.runtime.threads import lone_batch_executor

pytestmark = pytest.mark.anyio


def thread_counting_batcher(
    seen: dict[int, int], policy: BatchPolicy, hold_first: threading.Event | None = None
) -> DynamicBatcher[int, int]:
    """Records each item's intra-op thread count; item 1 waits for `hold_first` if given."""

    def run(items: list[int]) -> list[int]:
        for item in items:
            seen[item] = torch.get_num_threads()
        if hold_first is not None and 1 in items:
            hold_first.wait(5)
        return items

    return DynamicBatcher("threads", run, policy)


async def test_a_lone_batch_runs_with_the_lone_threads_and_gives_them_back() -> None:
    seen: dict[int, int] = {}
    policy = BatchPolicy(max_batch_size=1, max_wait_s=0.0, queue_limit=8, lone_threads=3)
    batcher = thread_counting_batcher(seen, policy)
    batcher.start()
    try:
        await batcher.submit_many([1])
        await batcher.submit_many([2])
    finally:
        batcher.stop()
    assert seen == {1: 3, 2: 3}


async def test_a_batch_beside_a_running_one_keeps_the_workers_own_threads() -> None:
    seen: dict[int, int] = {}
    release = threading.Event()
    own = torch.get_num_threads()
    policy = BatchPolicy(
        max_batch_size=1,
        max_wait_s=0.0,
        queue_limit=8,
        threads=2,
        lone_threads=own + 1,
        own_threads=own,
    )
    batcher = thread_counting_batcher(seen, policy, hold_first=release)
    batcher.start()
    try:
        first = asyncio.ensure_future(batcher.submit_many([1]))
        while 1 not in seen:  # item 1's batch is running (and held) before item 2 arrives
            await asyncio.sleep(0.01)
        second = await batcher.submit_many([2])
        release.set()
        assert await first == [1] and second == [2]
    finally:
        release.set()
        batcher.stop()
    assert seen == {1: own + 1, 2: own}


async def test_without_lone_threads_every_batch_keeps_the_workers_threads() -> None:
    seen: dict[int, int] = {}
    batcher = thread_counting_batcher(
        seen, BatchPolicy(max_batch_size=1, max_wait_s=0.0, queue_limit=8)
    )
    batcher.start()
    try:
        await batcher.submit_many([1])
    finally:
        batcher.stop()
    assert seen == {1: torch.get_num_threads()}


def test_lone_threads_plan() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert plan_lone_threads(cpu, 1, 4) == 4
    assert plan_lone_threads(cpu, 2, 1) == 2  # never fewer than the workers' own
    assert plan_lone_threads(cpu, 1, 0) >= 1  # every core this process may use
    assert plan_lone_threads(cuda, 1, 0) == 1


async def test_lone_batches_of_every_model_run_on_one_thread() -> None:
    # One OpenMP team for the whole process (runtime/threads.py): not the workers' threads.
    ran_on: list[int] = []

    def run(items: list[int]) -> list[int]:
        ran_on.append(threading.get_ident())
        return items

    policy = BatchPolicy(max_batch_size=1, max_wait_s=0.0, queue_limit=8, threads=2, lone_threads=2)
    batchers = [DynamicBatcher(name, run, policy) for name in ("first", "second")]
    for batcher in batchers:
        batcher.start()
    try:
        for batcher in batchers * 3:
            assert await batcher.submit_many([7]) == [7]
    finally:
        for batcher in batchers:
            batcher.stop()
    workers = {thread.ident for batcher in batchers for thread in batcher._threads}
    assert len(set(ran_on)) == 1 and ran_on[0] not in workers


def test_the_lone_thread_leaves_new_threads_their_usual_count() -> None:
    def count_in_a_new_thread() -> int:
        counts: list[int] = []
        thread = threading.Thread(target=lambda: counts.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        return counts[0]

    usual = count_in_a_new_thread()
    lone = lone_batch_executor(usual + 5, 0)
    assert lone.submit(torch.get_num_threads).result() == usual + 5
    assert count_in_a_new_thread() == usual
