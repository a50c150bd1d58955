"""When may a replaced model be stopped? Once every request that could hold it has finished.

A request resolves its model (and batcher) once, early, and uses it until it answers. After a
reload switches the registry to a new set, requests that began before the switch may still hold
the old set's models; requests that begin after it cannot. So each request is counted under the
epoch it began in, a switch advances the epoch, and the old set is retired when no request of
that epoch or an earlier one is left (the grace period of read-copy-update).
"""

import threading
from collections import Counter


class ReaderEpochs:
    """Requests in flight, counted by the epoch they began in."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._epoch = 0
        self._readers: Counter[int] = Counter()

    @property
    def epoch(self) -> int:
        """The epoch requests beginning now are counted under."""
        return self._epoch

    def enter(self) -> int:
        """Count one request in; the epoch to hand back to `leave`."""
        with self._changed:
            self._readers[self._epoch] += 1
            return self._epoch

    def leave(self, epoch: int) -> None:
        """Count one request of `epoch` out."""
        with self._changed:
            self._readers[epoch] -= 1
            if self._readers[epoch] <= 0:
                del self._readers[epoch]
                self._changed.notify_all()

    def advance(self) -> int:
        """Start a new epoch (call after the switch); the epoch that ended."""
        with self._changed:
            self._epoch += 1
            return self._epoch - 1

    def in_flight(self, up_to: int) -> int:
        """Requests still running that began in `up_to` or earlier."""
        with self._changed:
            return sum(count for epoch, count in self._readers.items() if epoch <= up_to)

    def wait_until_done(self, up_to: int, timeout_s: float | None = None) -> bool:
        """Block until no request of epoch `up_to` or earlier is running; False on timeout."""
        with self._changed:
            return self._changed.wait_for(
                lambda: all(epoch > up_to for epoch in self._readers), timeout_s
            )
