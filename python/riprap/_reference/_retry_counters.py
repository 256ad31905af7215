"""Reference twin of `rust/core/src/retry/counters.rs` and `rust/py/src/retry/counters.rs`.

`RetryCounters` counts what one retried operation did: finished attempts by number, calls that
finally succeeded or failed, and (while timing is on) a histogram of call durations, for the
monitor and the Prometheus collector to read at scrape time.
"""

from __future__ import annotations

import threading
from typing import ClassVar

from .._fork import track
from .._stats import RetryCountersSnapshot
from .._validate import U64_MAX, secs_to_nanos

__all__ = ["ATTEMPT_SLOTS", "DURATION_BOUNDS", "RetryCounters", "duration_bucket"]

#: Attempts 1 to 9 are counted apart; the last slot counts every attempt from the tenth on.
ATTEMPT_SLOTS = 10
#: Upper bounds (inclusive, seconds) of the histogram's buckets; an unbounded one follows.
DURATION_BOUNDS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
_BOUND_NANOS = tuple(secs_to_nanos(b) for b in DURATION_BOUNDS)


def _slot(attempt: int) -> int:
    return min(max(attempt - 1, 0), ATTEMPT_SLOTS - 1)


def _positive(seconds: float) -> float:
    return seconds if seconds > 0.0 else 0.0  # NaN counts as zero, as in the core


def duration_bucket(seconds: float) -> int:
    """The histogram bucket of a duration."""
    nanos = secs_to_nanos(_positive(seconds))
    for i, bound in enumerate(_BOUND_NANOS):
        if nanos <= bound:
            return i
    return len(_BOUND_NANOS)


class RetryCounters:
    """The counters of one retried operation.

    Attempts by number, final successes and failures, and a duration histogram (when timing is
    on).
    """

    duration_bounds: ClassVar[list[float]] = list(DURATION_BOUNDS)

    def __init__(self) -> None:
        self._timing = False
        self._after_fork()
        track(self)

    def _after_fork(self) -> None:
        """A forked child starts from zero (timing stays as it was)."""
        self._lock = threading.Lock()
        self._first_successes = 0
        self._attempts = [0] * ATTEMPT_SLOTS
        self._retried_successes = 0
        self._failures = 0
        self._buckets = [0] * (len(DURATION_BOUNDS) + 1)
        self._sum_nanos = 0

    @property
    def timing(self) -> bool:
        """Whether call durations are measured."""
        return self._timing

    def set_timing(self, on: bool) -> None:
        """Turns the duration histogram on or off."""
        self._timing = bool(on)

    def failed_attempt(self, attempt: int) -> None:
        """Attempt number `attempt` failed (it may be retried or not)."""
        with self._lock:
            self._attempts[_slot(attempt)] += 1

    def succeeded(self, attempt: int, seconds: float | None = None) -> None:
        """The call succeeded at attempt number `attempt`, after `seconds` if it was timed."""
        with self._lock:
            if attempt <= 1:
                self._first_successes += 1
            else:
                self._attempts[_slot(attempt)] += 1
                self._retried_successes += 1
            if seconds is not None:
                self._observe(seconds)

    def gave_up(self, seconds: float | None = None) -> None:
        """The call ended without an accepted result, after `seconds` if it was timed."""
        with self._lock:
            self._failures += 1
            if seconds is not None:
                self._observe(seconds)

    def _observe(self, seconds: float) -> None:
        self._buckets[duration_bucket(seconds)] += 1
        nanos = secs_to_nanos(_positive(seconds))
        self._sum_nanos = min(self._sum_nanos + nanos, U64_MAX)

    def snapshot(self) -> RetryCountersSnapshot:
        """The counts now (see the binding's `RetryCounters.snapshot`)."""
        with self._lock:
            attempts = list(self._attempts)
            attempts[0] += self._first_successes
            buckets = list(self._buckets)
            return {
                "attempts": attempts,
                "successes": self._first_successes + self._retried_successes,
                "failures": self._failures,
                "buckets": buckets,
                "sum": float(self._sum_nanos)
                / 1e9,  # as the core: to float, then divide
                "count": sum(buckets),
            }
