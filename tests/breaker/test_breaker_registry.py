"""The breaker registry, `riprap.circuit_breaker` / `CircuitBreakerDecorator`, and the monitor.

Runs on the active backend. Tests use their own registries so the global one stays clean,
except where the global one is what is being tested (its names are unique per test).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import riprap
from riprap import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerDecorator,
    CircuitBreakerMonitor,
    CircuitBreakerRegistry,
    CircuitOpenError,
)
from riprap.testing import ManualClock


def test_get_breaker_creates_once_and_returns_the_same_object(
    clock: ManualClock,
) -> None:
    reg = CircuitBreakerRegistry()
    a = reg.get_breaker("db", clock=clock)
    assert reg.get_breaker("db") is a
    assert a.config == reg.default_config == CircuitBreakerConfig()
    cfg = CircuitBreakerConfig(failure_threshold=2)
    b = reg.get_breaker("api", cfg)
    assert reg.get_breaker("api", CircuitBreakerConfig(failure_threshold=2)) is b
    assert reg.breakers == {"db": a, "api": b}
    assert len(reg) == 2
    assert "db" in reg


def test_a_conflicting_config_for_an_existing_name_is_refused() -> None:
    reg = CircuitBreakerRegistry()
    reg.get_breaker("db", CircuitBreakerConfig(timeout=5.0))
    with pytest.raises(ValueError, match="already exists with a different config"):
        reg.get_breaker("db", CircuitBreakerConfig(timeout=6.0))


def test_equivalent_configs_are_equal_and_share_a_breaker() -> None:
    # `expected_exception=E` and `(E,)` mean the same thing: the same config, the same hash,
    # and the registry hands out the same breaker instead of refusing the second spelling.
    one = CircuitBreakerConfig(expected_exception=ConnectionError)
    tup = CircuitBreakerConfig(expected_exception=(ConnectionError,))
    assert one == tup
    assert hash(one) == hash(tup)
    assert one != CircuitBreakerConfig(expected_exception=(ConnectionError, KeyError))
    assert one != CircuitBreakerConfig()  # Exception, not ConnectionError
    assert CircuitBreakerConfig() == CircuitBreakerConfig(
        expected_exception=(Exception,)
    )
    reg = CircuitBreakerRegistry()
    b = reg.get_breaker("db", one)
    assert reg.get_breaker("db", tup) is b
    with pytest.raises(ValueError, match="already exists with a different config"):
        reg.get_breaker("db", CircuitBreakerConfig(expected_exception=KeyError))


def test_get_all_stats_and_reset_all(clock: ManualClock) -> None:
    reg = CircuitBreakerRegistry(CircuitBreakerConfig(failure_threshold=1))
    reg.get_breaker("a", clock=clock).force_open()
    reg.get_breaker("b", clock=clock)
    stats = reg.get_all_stats()
    assert {k: v["state"] for k, v in stats.items()} == {"a": "open", "b": "closed"}
    reg.reset_all()
    assert {v["state"] for v in reg.get_all_stats().values()} == {"closed"}


def test_circuit_breaker_decorator_shares_one_breaker_per_name(
    clock: ManualClock,
) -> None:
    reg = CircuitBreakerRegistry()

    @riprap.circuit_breaker(
        "agents", registry=reg, clock=clock, failure_threshold=2, timeout=30.0
    )
    def send(cmd: str) -> str:
        raise ConnectionError(cmd)

    @riprap.circuit_breaker("agents", registry=reg)
    async def poll() -> str:
        return "ok"

    breaker = reg.breakers["agents"]
    assert send.circuit_breaker is breaker  # type: ignore[attr-defined]
    assert poll.circuit_breaker is breaker  # type: ignore[attr-defined]
    assert breaker.config.failure_threshold == 2
    for _ in range(2):
        with pytest.raises(ConnectionError):
            send("reboot")
    with pytest.raises(CircuitOpenError) as info:
        asyncio.run(poll())
    assert (info.value.name, info.value.retry_after) == ("agents", 30.0)


def test_the_seed_spelling_and_the_global_registry() -> None:
    name = f"seed-{time.monotonic_ns()}"

    @CircuitBreakerDecorator(
        name,
        CircuitBreakerConfig(failure_threshold=3, timeout=30.0, success_threshold=2),
    )
    async def send_agent_command(agent_id: str, command: dict[str, Any]) -> str:
        return f"{agent_id}:{command['op']}"

    assert asyncio.run(send_agent_command("a1", {"op": "ping"})) == "a1:ping"
    assert (
        riprap.circuit_breaker_registry.get_breaker(name).get_stats()["total_successes"]
        == 1
    )
    with pytest.raises(TypeError, match="config must be a CircuitBreakerConfig"):
        riprap.circuit_breaker("x", {"timeout": 1})  # type: ignore[arg-type]


def test_fields_override_a_given_config() -> None:
    reg = CircuitBreakerRegistry()
    base = CircuitBreakerConfig(timeout=5.0, failure_threshold=7)
    riprap.circuit_breaker("f", base, registry=reg, timeout=9.0)(lambda: None)
    assert reg.breakers["f"].config == CircuitBreakerConfig(
        timeout=9.0, failure_threshold=7
    )
    with pytest.raises(TypeError):
        riprap.circuit_breaker("g", registry=reg, bogus=1)


def monitor_with(clock: ManualClock, **thresholds: float) -> tuple[Any, ...]:
    reg = CircuitBreakerRegistry()
    monitor = CircuitBreakerMonitor(reg)
    monitor.alert_thresholds.update(thresholds)
    return reg, monitor


def test_monitor_thresholds_and_alert_shapes(clock: ManualClock) -> None:
    reg, monitor = monitor_with(clock)
    assert monitor.alert_thresholds == {"failure_rate": 0.3, "open_duration": 300}
    cfg = CircuitBreakerConfig(failure_threshold=100, minimum_calls=100, timeout=1000.0)
    flaky = reg.get_breaker("flaky", cfg, clock=clock)
    healthy = reg.get_breaker("healthy", cfg, clock=clock)

    @flaky
    def op(fail: bool) -> int:
        if fail:
            raise ConnectionError("down")
        return 1

    for fail in (True, False, False):
        try:
            op(fail)
        except ConnectionError:
            pass
    healthy(lambda: 1)()
    alerts = asyncio.run(monitor.monitor_circuit_breakers())
    assert len(alerts) == 1
    a = alerts[0]
    assert {"type", "severity", "circuit_breaker", "message"} <= a.keys()
    assert (a["type"], a["circuit_breaker"], a["threshold"]) == (
        "high_failure_rate",
        "flaky",
        0.3,
    )
    assert a["failure_rate"] == pytest.approx(1 / 3)
    assert a["message"] == "High failure rate for circuit breaker 'flaky': 33.33%"


def test_open_duration_counts_from_opening_across_reopens(clock: ManualClock) -> None:
    # The seed measured time since the last failure; we measure since the breaker opened.
    reg, monitor = monitor_with(clock, failure_rate=1.0)
    b = reg.get_breaker("down", CircuitBreakerConfig(timeout=100.0), clock=clock)
    b.force_open()
    clock.advance(250.0)  # half-open at 100, the probe fails, open again

    @b
    def probe() -> None:
        raise ConnectionError("still down")

    with pytest.raises(ConnectionError):
        probe()
    assert b.state.value == "open"
    clock.advance(50.0)
    assert asyncio.run(monitor.monitor_circuit_breakers()) == []  # 300 s: not above
    clock.advance(0.5)
    (alert,) = asyncio.run(monitor.monitor_circuit_breakers())
    assert (alert["type"], alert["duration"], alert["state"]) == (
        "circuit_breaker_open",
        300.5,
        "open",
    )
    assert alert["message"] == "Circuit breaker 'down' has been open for 300.5 seconds"
    b.reset()
    assert asyncio.run(monitor.monitor_circuit_breakers()) == []


def test_dashboard_summary_breakers_alerts_and_wall_timestamp(
    clock: ManualClock,
) -> None:
    reg, monitor = monitor_with(clock)
    reg.get_breaker("a", clock=clock).force_open()
    b = reg.get_breaker("b", CircuitBreakerConfig(timeout=1.0), clock=clock)
    b.force_open()
    clock.advance(1.0)
    reg.get_breaker("c", clock=clock)
    before = time.time()
    data = asyncio.run(monitor.get_dashboard_data())
    assert before <= data["timestamp"] <= time.time()
    assert data["summary"] == {
        "total_breakers": 3,
        "open_breakers": 1,
        "half_open_breakers": 1,
        "closed_breakers": 1,
        "avg_failure_rate": 0.0,
    }
    assert set(data["breakers"]) == {"a", "b", "c"}
    assert data["breakers"]["b"]["state"] == "half_open"
    assert data["alerts"] == []
    empty = asyncio.run(
        CircuitBreakerMonitor(CircuitBreakerRegistry()).get_dashboard_data()
    )
    assert empty["summary"]["total_breakers"] == 0
    assert empty["summary"]["avg_failure_rate"] == 0.0


def test_a_monitor_without_registry_sees_directly_built_breakers(
    clock: ManualClock,
) -> None:
    # Monitors see every named primitive, registry-made or not.
    tag = f"direct-{time.monotonic_ns()}"
    one, two = CircuitBreaker(tag, clock=clock), CircuitBreaker(tag, clock=clock)
    two.force_open()
    data = asyncio.run(CircuitBreakerMonitor().get_dashboard_data())
    assert data["breakers"][tag]["state"] == "closed"
    assert data["breakers"][f"{tag}#2"]["state"] == "open"
    assert one is not two
