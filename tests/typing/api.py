"""Type-checked by `mypy --strict` (never executed): the public API as users write it."""

from __future__ import annotations

from collections.abc import Mapping

import riprap
from riprap import RetryPolicy
from riprap.testing import ManualClock

clock = ManualClock()
policy = RetryPolicy(max_attempts=5, base_delay=0.2, seed=1)
delay: float = policy.compute_delay(3)
budget = riprap.RetryBudget(0.2, 3.0, 10.0, clock=clock)


@riprap.retry(policy, clock=clock)
def fetch(x: int) -> str:
    return str(x)


@riprap.retry
def plain() -> int:
    return 1


@riprap.retry(max_attempts=3, budget=budget)
async def afetch(x: int) -> int:
    return x


text: str = fetch(1)
number: int = plain()


async def use() -> int:
    for attempt in policy.attempts(clock=clock):
        with attempt:
            plain()
    async for attempt in policy.attempts():
        with attempt:
            await afetch(2)
    manager = riprap.RetryManager(policy, clock=clock)
    value = await manager.retry_with_backoff(afetch, 3, operation_id="x")
    stats: Mapping[str, object] = manager.get_retry_statistics("x")
    return int(value) + len(stats) + await afetch(4)


breaker = riprap.CircuitBreaker(
    "db", riprap.CircuitBreakerConfig(failure_threshold=3, timeout=30.0), clock=clock
)
state: riprap.CircuitState = breaker.state
breaker_stats: Mapping[str, object] = breaker.get_stats()
breaker.add_listener(lambda name, old, new: None)


@breaker
def guarded(x: int) -> int:
    return x


@riprap.circuit_breaker("api", failure_threshold=2)
async def aguarded(x: int) -> int:
    return x


guarded_value: int = guarded(1)


async def use_breaker() -> int:
    with breaker:
        pass
    async with breaker:
        pass
    value: int = await breaker.call(guarded, 2) + await aguarded(3)
    monitor = riprap.CircuitBreakerMonitor(riprap.circuit_breaker_registry)
    alerts: list[dict[str, object]] = await monitor.monitor_circuit_breakers()
    data: dict[str, object] = await monitor.get_dashboard_data()
    return value + len(alerts) + len(data)


backend: str = riprap.backend()


bulkhead = riprap.Bulkhead(
    "db", riprap.BulkheadConfig(max_concurrent_calls=4, max_wait=0.5), clock=clock
)
same: riprap.Bulkhead = riprap.ResourceBulkhead("other")
bulkhead_stats: dict[str, object] = bulkhead.get_stats()
limit: int = bulkhead.current_limit


@bulkhead
def query(sql: str) -> list[str]:
    return [sql]


@riprap.bulkhead("external_api", max_concurrent_calls=2)
async def call_api(path: str) -> bytes:
    return path.encode()


@riprap.BulkheadDecorator("database")
async def write(row: int) -> int:
    return row


@riprap.timeout(2.0)
def blocking(x: int) -> int:
    return x


@riprap.timeout(2.0, clock=clock)
async def nonblocking(x: int) -> int:
    return x


rows: list[str] = query("select 1")
sync_result: int = blocking(1)


async def use_bulkhead() -> int:
    with bulkhead:
        query("x")
    async with bulkhead:
        await call_api("/a")
    async with riprap.deadline(1.0):
        await write(1)
    with riprap.deadline(1.0, clock=clock):
        query("y")
    got: list[str] = await bulkhead.execute(query, "z")
    manager = riprap.BulkheadManager()
    await manager.execute_with_bulkhead("database", query, "w")
    all_stats: dict[str, dict[str, object]] = riprap.bulkhead_manager.get_all_stats()
    return len(got) + len(all_stats) + await nonblocking(2) + len(await call_api("/b"))


async def use_monitor() -> str:
    from prometheus_client import CollectorRegistry

    import riprap.metrics

    monitor = riprap.ResilienceMonitor(alert_thresholds={"failure_rate": 0.5})
    metrics: dict[str, object] = await monitor.collect_resilience_metrics()
    now: dict[str, object] = monitor.snapshot()
    collector: riprap.metrics.ResilienceCollector = riprap.metrics.register(
        CollectorRegistry(), max_series=100
    )
    text: str = await monitor.generate_resilience_report()
    return f"{len(metrics)} {len(now)} {collector.max_series} {text}"
