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
    "DeadLetterQueueStats",
    "FallbackStats",
    "KeyedRateLimiterStats",
    "RateLimiterStats",
    "ResultCacheStats",
    "RetryBudgetStats",
    "RetryCountersSnapshot",
    "RetryStatistics",
    "SharedCircuitBreakerStats",
    "SharedKeyedRateLimiterStats",
    "SharedRateLimiterStats",
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


class SharedRateLimiterStats(RateLimiterStats):
    """`RateLimiter(..., storage=...).get_stats()`: this process's view of a shared limiter.

    The counters count this process's decisions, whoever made them (Redis, or the fallback).
    `storage`: the server (never its password); `storage_errors`: calls Redis failed to answer;
    `fallback_decisions`: decisions made without Redis in the "fail_open"/"fail_closed" modes
    (in "local" mode the local bucket's decisions are in the counters);
    `local_fraction` and `time_source` as configured.
    """

    storage: str
    storage_errors: int
    fallback_decisions: int
    local_fraction: float
    time_source: str


class SharedKeyedRateLimiterStats(SharedRateLimiterStats):
    """`KeyedRateLimiter(..., storage=...).get_stats()`.

    As `SharedRateLimiterStats`, plus the local fallback table's `keys` and `evicted`.
    """

    keys: int
    evicted: int


class SharedCircuitBreakerStats(CircuitBreakerStats):
    """`CircuitBreaker(..., storage=...).get_stats()`.

    The shared state and window, with the lifetime totals of this process.

    `storage`, `storage_errors`, `fallback_decisions` as for the limiters; `shared`: "state"
    or "quorum"; `state_lost`: times this process found the stored state gone (evicted,
    flushed, or expired after a long idle time) and started it again CLOSED; `quorum_open`
    and `quorum_live`: in "quorum" mode, the live processes voting open and all live ones
    (0 in "state" mode).
    """

    storage: str
    storage_errors: int
    fallback_decisions: int
    shared: str
    state_lost: int
    quorum_open: int
    quorum_live: int


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


class ResultCacheStats(TypedDict):
    """`ResultCache.get_stats()`: counters since creation, the size and the settings.

    `evictions`: least recently used entries dropped to make room; `expirations`: entries found
    stale (by `get`, or dropped by `len()`).
    """

    hits: int
    misses: int
    hit_rate: float
    evictions: int
    expirations: int
    size: int
    max_entries: int
    ttl: float


class FallbackStats(TypedDict):
    """`FallbackStrategy.get_stats()`: what answered each call, since creation.

    `fallback_failures` counts failed fallback calls (a call may make several) and `timeouts`
    those past `degraded_timeout`; `cache_fallbacks`, `default_fallbacks` and `exhausted` count
    calls answered by the cache, by the default, or by `FallbackExhaustedError`; `abandoned`
    counts sync fallback threads left running at their deadline, `abandoned_running` those still
    running now.
    """

    name: str
    calls: int
    primary_successes: int
    primary_failures: int
    fallback_successes: int
    fallback_failures: int
    timeouts: int
    cache_fallbacks: int
    default_fallbacks: int
    exhausted: int
    abandoned: int
    abandoned_running: int
    cache: ResultCacheStats


class DeadLetterQueueStats(TypedDict):
    """`DeadLetterQueue.get_stats()`: the file's contents and its retention counters.

    `created_at` times are wall-clock seconds since the epoch (None when the queue is empty);
    `dropped_max_entries` and `dropped_max_age` are totals over the file's life, from every
    process that wrote to it.
    """

    path: str
    entries: int
    by_operation: dict[str, int]
    oldest_created_at: float | None
    newest_created_at: float | None
    dropped_max_entries: int
    dropped_max_age: int
    max_entries: int | None
    max_age: float | None


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
