"""Inference workers and decode threads run below the event loop's priority when asked."""

import os
import sys
import threading

import pytest

from app.runtime.batching import BatchPolicy, DynamicBatcher
from app.runtime.threads import lower_thread_priority

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's"),
]


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_only_the_calling_thread_is_lowered() -> None:
    before = own_nice()
    seen: list[int] = []

    def lowered() -> None:
        lower_thread_priority(3)
        seen.append(own_nice())

    thread = threading.Thread(target=lowered)
    thread.start()
    thread.join()
    assert seen == [min(19, before + 3)]
    assert own_nice() == before  # this thread (the event loop's, in the service) keeps its own


async def test_batch_workers_run_at_the_policy_s_nice_value() -> None:
    before = own_nice()

    def run(items: list[int]) -> list[int]:
        return [own_nice() for _ in items]

    policy = BatchPolicy(max_batch_size=2, max_wait_s=0.0, queue_limit=8, threads=2, nice=5)
    batcher: DynamicBatcher[int, int] = DynamicBatcher("nice", run, policy)
    batcher.start()
    try:
        assert await batcher.submit_many([1, 2]) == [min(19, before + 5)] * 2
    finally:
        batcher.stop()
    assert own_nice() == before
