"""Every statistics dict has exactly the keys its TypedDict declares, on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import riprap
from riprap.testing import ManualClock


def _check(stats: Mapping[str, object], typed: type) -> None:
    assert set(stats) == set(typed.__required_keys__)  # type: ignore[attr-defined]


def test_every_stats_dict_matches_its_declaration(
    clock: ManualClock, tmp_path: Path
) -> None:
    breaker = riprap.CircuitBreaker("stats", clock=clock)
    _check(breaker.get_stats(), riprap.CircuitBreakerStats)
    breaker.force_open()
    _check(breaker.get_stats(), riprap.CircuitBreakerStats)

    limiter = riprap.RateLimiter(10.0, clock=clock)
    limiter.try_acquire()
    _check(limiter.get_stats(), riprap.RateLimiterStats)

    keyed = riprap.KeyedRateLimiter(10.0, clock=clock)
    keyed.try_acquire("k")
    _check(keyed.get_stats(), riprap.KeyedRateLimiterStats)
    assert (
        riprap.RateLimiterStats.__required_keys__
        < riprap.KeyedRateLimiterStats.__required_keys__
    )

    budget = riprap.RetryBudget(clock=clock)
    _check(budget.get_stats(), riprap.RetryBudgetStats)

    manager = riprap.RetryManager(riprap.RetryPolicy(base_delay=0.0), clock=clock)

    async def ok() -> int:
        return 1

    asyncio.run(manager.retry_with_backoff(ok, operation_id="op"))
    _check(manager.get_retry_statistics("op"), riprap.RetryStatistics)
    assert manager.get_retry_statistics("never") == {}

    cache = riprap.ResultCache(1.0, 2, clock=clock)
    cache.put("k", 1)
    _check(cache.get_stats(), riprap.ResultCacheStats)

    strategy = riprap.FallbackStrategy(clock=clock)
    strategy.execute_with_fallback_sync(lambda: 1, [], cache_key="k")
    _check(strategy.get_stats(), riprap.FallbackStats)
    _check(strategy.get_stats()["cache"], riprap.ResultCacheStats)

    queue = riprap.DeadLetterQueue(tmp_path / "dlq.sqlite3")
    _check(queue.get_stats(), riprap.DeadLetterQueueStats)
    queue.put("op")
    _check(queue.get_stats(), riprap.DeadLetterQueueStats)
    queue.close()
