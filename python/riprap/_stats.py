"""The shape of every statistics dict riprap returns, declared once.

`get_stats()` and friends return plain dicts (cheap to build in Rust, easy to serialise); these
`TypedDict`s say exactly which keys each one has, for type checkers, for readers, and for the
code that reads them (monitors, the Prometheus collector). Times are seconds on the primitive's
clock. Both backends return exactly these keys (a test checks it).
"""

from __future__ import annotations

from typing import TypedDict

__all__ = [
    "CircuitBreakerStats",
    "KeyedRateLimiterStats",
    "RateLimiterStats",
    "RetryBudgetStats",
    "RetryCountersSnapshot",
    "RetryStatistics",
]


class CircuitBreakerStats(TypedDict):
    """`CircuitBreaker.get_stats()`: see its docstring for each key."""

    name: str
    state: str
    failure_count: int
    success_count: int
    failure_rate: float
    last_failure_time: float | None
    time_since_last_failure: float | None
    total_calls: int
    consecutive_failures: int
    window_calls: int
    slow_call_count: int
    slow_call_rate: float
    half_open_calls: int
    half_open_successes: int
    opened_at: float | None
    open_duration: float
    retry_after: float
    total_successes: int
    total_failures: int
    total_ignored: int
    total_cancelled: int
    total_rejected: int
    total_lost_trials: int


class RateLimiterStats(TypedDict):
    """`RateLimiter.get_stats()`: configuration and counters since creation.

    `admitted`: requests granted (at once or after waiting); `rejected`: `try_acquire` said no
    or `RateLimitExceeded` was raised; `waited`: granted requests that waited first.
    """

    name: str | None
    rate: float
    burst: float
    admitted: int
    rejected: int
    waited: int


class KeyedRateLimiterStats(RateLimiterStats):
    """`KeyedRateLimiter.get_stats()`: as `RateLimiterStats` over all keys, and two more.

    `keys`: keys tracked now; `evicted`: keys forgotten to bound memory since creation.
    """

    keys: int
    evicted: int


class RetryBudgetStats(TypedDict):
    """`RetryBudget.get_stats()`: configuration, the window's counts, and lifetime totals.

    `deposits` are the window's first attempts, `withdrawals` its retries, `available` the
    retries still allowed now.
    """

    ratio: float
    min_per_second: float
    window: float
    deposits: int
    withdrawals: int
    available: float
    total_deposits: int
    total_withdrawals: int
    total_refused: int


class RetryStatistics(TypedDict):
    """`RetryManager.get_retry_statistics(operation_id)`: aggregates over every call.

    `total_time` is the sum of attempt durations (sleeps excluded); `success_rate` is the share
    of calls that finally succeeded.
    """

    total_calls: int
    successful_calls: int
    total_attempts: int
    total_time: float
    average_attempt_time: float
    max_attempt_time: float
    min_attempt_time: float
    success_rate: float


class RetryCountersSnapshot(TypedDict):
    """`RetryCounters.snapshot()`: what one retried operation did, since the process started.

    `attempts[i]` counts finished attempts number `i + 1` (the last entry: every attempt from the
    tenth on); `successes` and `failures` count calls by their final outcome (a failure: retries
    ran out or were refused, the error was not retryable, or a hook raised; a call cut short by a
    control-flow exception is in neither). `buckets` are timed calls per duration bucket (not
    cumulative; bounds in `RetryCounters.duration_bounds`, then an unbounded one), `sum` their
    total seconds and `count` their number.
    """

    attempts: list[int]
    successes: int
    failures: int
    buckets: list[int]
    sum: float
    count: int
