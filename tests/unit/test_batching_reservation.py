"""Queue slots are reserved before decoding: refusals come first, unused slots come back."""

import pytest

from app.errors import Overloaded
from app.runtime.batching import BatchPolicy, DynamicBatcher

pytestmark = pytest.mark.anyio


def started_batcher(queue_limit: int) -> DynamicBatcher[int, int]:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        "double",
        lambda items: [item * 2 for item in items],
        BatchPolicy(max_batch_size=4, max_wait_s=0.0, queue_limit=queue_limit),
    )
    batcher.start()
    return batcher


async def test_a_reservation_past_the_limit_is_refused_at_once() -> None:
    batcher = started_batcher(queue_limit=4)
    try:
        with batcher.reserve(3), pytest.raises(Overloaded):
            batcher.reserve(2).__enter__()
        assert batcher.waiting == 0
    finally:
        batcher.stop()


async def test_reserved_slots_not_submitted_are_given_back() -> None:
    batcher = started_batcher(queue_limit=4)
    try:
        with batcher.reserve(4) as reservation:
            assert await batcher.submit_many([1, 2], reservation) == [2, 4]
            assert reservation.held == 2  # e.g. two uploads that could not be decoded
        assert batcher.waiting == 0
        with batcher.reserve(4):  # the whole queue is free again
            pass
    finally:
        batcher.stop()


async def test_more_items_than_reserved_is_a_bug() -> None:
    batcher = started_batcher(queue_limit=4)
    try:
        with batcher.reserve(1) as reservation, pytest.raises(ValueError, match="reserved"):
            await batcher.submit_many([1, 2], reservation)
    finally:
        batcher.stop()
