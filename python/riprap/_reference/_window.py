"""Reference twin of `rust/core/src/window.rs`: a ring of time buckets with running totals.

Time is cut into buckets `[k*width, (k+1)*width)` (integer nanoseconds). At time `now` the
window holds the last `n` buckets, so a call is never counted once it is `n*width` old and always
counted while it is less than `(n-1)*width` old. A clock that steps back records into the newest
bucket. Recording is O(1); moving forward is O(1) per expired bucket, at most `n` steps.
"""

from __future__ import annotations

import dataclasses

__all__ = ["MAX_BUCKETS", "Counts", "Window"]

MAX_BUCKETS = 4096


@dataclasses.dataclass
class Counts:
    """Outcome counts of a bucket or of the whole window."""

    successes: int = 0
    failures: int = 0
    slow: int = 0

    def calls(self) -> int:
        """Successes plus failures."""
        return self.successes + self.failures

    def failure_rate(self) -> float:
        """`failures / calls`, 0.0 for an empty window."""
        calls = self.calls()
        return self.failures / calls if calls else 0.0

    def slow_rate(self) -> float:
        """`slow / calls`, 0.0 for an empty window."""
        calls = self.calls()
        return self.slow / calls if calls else 0.0


class Window:
    """The last `span` nanoseconds of outcomes in `min(buckets, span)` buckets."""

    def __init__(self, span: int, buckets: int) -> None:
        if span < 1:
            raise ValueError(f"span must be >= 1, got {span}")
        if buckets < 1:
            raise ValueError(f"buckets must be >= 1, got {buckets}")
        if buckets > MAX_BUCKETS:
            raise ValueError(f"buckets must be <= {MAX_BUCKETS}, got {buckets}")
        n = min(buckets, span)
        self.width = span // n
        self._epochs = [0] * n
        self._counts = [Counts() for _ in range(n)]
        self._head = 0
        self._totals = Counts()

    def __len__(self) -> int:
        return len(self._counts)

    def _rotate(self, now: int) -> None:
        epoch = now // self.width
        if epoch <= self._head:
            return  # same bucket, or a clock that stepped back
        n = len(self._counts)
        steps = min(epoch - self._head, n)
        for e in range(epoch - steps + 1, epoch + 1):
            slot = e % n
            old = self._counts[slot]
            self._totals.successes -= old.successes
            self._totals.failures -= old.failures
            self._totals.slow -= old.slow
            self._counts[slot] = Counts()
            self._epochs[slot] = e
        self._head = epoch

    def record(self, now: int, failure: bool, slow: bool) -> None:
        """Records one call that ended at `now`."""
        self._rotate(now)
        bucket = self._counts[self._head % len(self._counts)]
        if failure:
            bucket.failures += 1
            self._totals.failures += 1
        else:
            bucket.successes += 1
            self._totals.successes += 1
        if slow:
            bucket.slow += 1
            self._totals.slow += 1

    def counts(self, now: int) -> Counts:
        """The counts as of `now` (a copy)."""
        self._rotate(now)
        return dataclasses.replace(self._totals)

    def peek(self) -> Counts:
        """The counts as they stand, without moving the window (a copy)."""
        return dataclasses.replace(self._totals)

    def clear(self) -> None:
        """Empties the window."""
        self._counts = [Counts() for _ in self._counts]
        self._totals = Counts()
