"""CircuitBreaker with `storage=` (shared="state"): one state for every object and process that
names it. Objects in one process stand in for processes here (each has its own local state and
counters); tests/redis/test_redis_processes.py runs real ones."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

import riprap
from riprap import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from riprap.testing import ManualClock

CONFIG = CircuitBreakerConfig(
    failure_threshold=2,
    timeout=10.0,
    success_threshold=2,
    half_open_max_calls=2,
    monitoring_window=60.0,
)


def shared(
    url: str, clock: ManualClock, name: str = "svc", **kw: Any
) -> CircuitBreaker:
    config = kw.pop("config", CONFIG)
    return CircuitBreaker(
        name, config, storage=url, clock=clock, time_source="client", **kw
    )


def fail(breaker: CircuitBreaker, exc: BaseException | None = None) -> None:
    with contextlib.suppress(ValueError), breaker:
        raise exc or ValueError("down")


def test_reg_B12_failures_in_one_open_it_for_all_with_the_stored_open_time(
    url: str, clock: ManualClock
) -> None:
    a, b = shared(url, clock), shared(url, clock)
    fail(a)
    assert b.state is CircuitState.CLOSED
    fail(b)  # the second consecutive failure, seen by another object: it opens
    assert a.state is CircuitState.OPEN
    clock.advance(3.0)
    c = shared(url, clock)  # built later: sees OPEN, resets nothing
    for breaker in (a, b, c):
        with pytest.raises(CircuitOpenError) as info, breaker:
            pass
        assert info.value.retry_after == 7.0  # the stored open time, not "now"
        assert breaker.get_stats()["opened_at"] == pytest.approx(0.0, abs=1e-6)
    clock.advance(7.0)
    assert c.state is CircuitState.HALF_OPEN
    assert a.state is CircuitState.HALF_OPEN


def test_reg_B11_building_a_breaker_never_writes(
    url: str, r: Any, clock: ManualClock
) -> None:
    a = shared(url, clock)
    fail(a)
    fail(a)
    before = (r.hgetall("riprap:{svc}:state"), r.hgetall("riprap:{svc}:window"))
    shared(url, clock)
    CircuitBreaker("svc", CONFIG, storage=url)  # on server time, too
    assert (r.hgetall("riprap:{svc}:state"), r.hgetall("riprap:{svc}:window")) == before


def test_reg_B13_a_vanished_state_starts_closed_and_is_counted(
    url: str, r: Any, clock: ManualClock
) -> None:
    a, b = shared(url, clock), shared(url, clock)
    assert a.state is CircuitState.CLOSED
    assert b.state is CircuitState.CLOSED
    fail(a)
    with a:  # a call admitted before the state vanishes ...
        fail(b)
        assert a.state is CircuitState.OPEN
        r.flushall()
        assert (
            b.state is CircuitState.CLOSED
        )  # no AttributeError on None (pybreaker#28)
    # ... reports into an earlier incarnation: it changes nothing.
    stats = a.get_stats()
    assert (stats["state"], stats["window_calls"], stats["state_lost"]) == (
        "closed",
        0,
        1,
    )
    assert b.get_stats()["state_lost"] == 1
    fail(a)
    assert a.state is CircuitState.CLOSED
    fail(b)
    assert a.state is CircuitState.OPEN


def test_reg_B14_names_are_namespaced(url: str, r: Any, clock: ManualClock) -> None:
    a, other = shared(url, clock), shared(url, clock, name="other")
    fail(a)
    fail(a)
    assert other.state is CircuitState.CLOSED
    assert sorted(r.keys("*")) == [
        b"riprap:{other}:state",
        b"riprap:{svc}:state",
        b"riprap:{svc}:window",
    ]
    for key in r.keys("*"):
        assert r.pttl(key) > 0


def test_half_open_admits_at_most_max_calls_across_breakers(
    url: str, clock: ManualClock
) -> None:
    breakers = [shared(url, clock) for _ in range(3)]
    breakers[0].force_open()
    clock.advance(10.0)
    admitted, rejected = 0, []
    with contextlib.ExitStack() as stack:
        for breaker in breakers * 2:
            try:
                stack.enter_context(breaker)
            except CircuitOpenError as e:
                rejected.append(e.retry_after)
            else:
                admitted += 1
        assert admitted == 2
        assert rejected == [0.0] * 4
        assert breakers[2].get_stats()["half_open_calls"] == 2
    # Two trial successes close it.
    assert breakers[1].state is CircuitState.CLOSED


def test_lost_trial_calls_are_reclaimed_after_the_timeout(
    url: str, clock: ManualClock
) -> None:
    a, b = shared(url, clock), shared(url, clock)
    a.force_open()
    clock.advance(10.0)
    lost = [a._engine.acquire(), a._engine.acquire()]  # their process "died"
    with pytest.raises(CircuitOpenError):
        b._engine.acquire()
    clock.advance(9.999)
    with pytest.raises(CircuitOpenError):
        b._engine.acquire()
    clock.advance(0.001)
    with b:
        pass
    assert b.get_stats()["total_lost_trials"] == 2
    a._engine.record(
        lost[0]
    )  # a late report from the old trial generation moves nothing
    assert b.get_stats()["half_open_successes"] == 1


def test_a_failed_trial_reopens_and_successes_close(
    url: str, clock: ManualClock
) -> None:
    a, b = shared(url, clock), shared(url, clock)
    a.force_open()
    clock.advance(10.0)
    fail(b)
    assert a.state is CircuitState.OPEN
    assert a.get_stats()["retry_after"] == 10.0
    clock.advance(10.0)
    with a:
        pass
    with b:
        pass
    assert a.state is CircuitState.CLOSED
    assert b.get_stats()["window_calls"] == 0  # closing clears the window


def test_failure_rate_and_slow_calls_use_the_shared_window(
    url: str, clock: ManualClock
) -> None:
    config = CircuitBreakerConfig(
        failure_threshold=100,
        minimum_calls=4,
        failure_rate_threshold=0.5,
        slow_call_duration=1.0,
        slow_call_rate_threshold=0.75,
        monitoring_window=60.0,
    )
    a, b = shared(url, clock, config=config), shared(url, clock, config=config)
    with a:
        pass
    fail(b)
    with a:
        pass
    fail(b)  # 2 of 4 fail: 0.5 does not exceed 0.5
    assert a.state is CircuitState.CLOSED
    fail(a)  # 3 of 5
    assert b.state is CircuitState.OPEN
    b.reset()
    for breaker in (a, b, a):
        with breaker:
            clock.advance(1.0)  # slow
    assert a.state is CircuitState.CLOSED  # 3 calls: fewer than minimum_calls
    with b:
        clock.advance(1.0)
    stats = a.get_stats()
    assert (stats["slow_call_count"], stats["state"]) == (4, "open")


def test_calls_age_out_of_the_window(url: str, clock: ManualClock) -> None:
    config = CircuitBreakerConfig(
        failure_threshold=3, minimum_calls=100, monitoring_window=60.0
    )
    a = shared(url, clock, config=config)
    fail(a)
    clock.advance(30.0)
    fail(a)
    assert a.get_stats()["failure_count"] == 2
    clock.advance(30.0)  # the first bucket left the window
    assert a.get_stats()["failure_count"] == 1
    assert a.get_stats()["consecutive_failures"] == 2


def test_ignored_and_cancelled_calls_count_as_neither(
    url: str, clock: ManualClock
) -> None:
    config = CircuitBreakerConfig(
        failure_threshold=1, excluded_exceptions=(KeyError,), timeout=10.0
    )
    a = shared(url, clock, config=config)
    with contextlib.suppress(KeyError), a:
        raise KeyError("excluded")
    with contextlib.suppress(riprap.RateLimitExceeded), a:
        raise riprap.RateLimitExceeded("inner", 1.0)  # riprap's own rejection
    assert a.state is CircuitState.CLOSED
    a.force_open()
    clock.advance(10.0)
    for _ in range(2):
        with contextlib.suppress(KeyboardInterrupt), a:  # the trial slot comes back
            raise KeyboardInterrupt
    stats = a.get_stats()
    assert (stats["half_open_calls"], stats["total_cancelled"]) == (0, 2)
    assert (stats["total_ignored"], stats["failure_count"]) == (2, 0)


def test_listeners_see_the_transitions_this_process_observes(
    url: str, clock: ManualClock
) -> None:
    a, b = shared(url, clock), shared(url, clock)
    seen: list[tuple[str, CircuitState, CircuitState]] = []
    b.add_listener(lambda name, old, new: seen.append((name, old, new)))
    fail(a)
    fail(a)
    assert seen == []
    assert b.state is CircuitState.OPEN
    clock.advance(10.0)
    with b:
        pass
    assert seen == [
        ("svc", CircuitState.CLOSED, CircuitState.OPEN),
        ("svc", CircuitState.OPEN, CircuitState.HALF_OPEN),
    ]


def test_decorators_and_async_paths(url: str, clock: ManualClock) -> None:
    a = shared(url, clock)

    @a
    def sync(x: int) -> int:
        if x < 0:
            raise ValueError(x)
        return x

    @a
    async def coro(x: int) -> int:
        if x < 0:
            raise ValueError(x)
        return x

    assert sync(1) == 1
    assert sync.circuit_breaker is a

    async def main() -> None:
        assert await coro(2) == 2
        assert await a.call(sync, 3) == 3
        async with a:
            pass
        with pytest.raises(ValueError):
            await coro(-1)
        with pytest.raises(ValueError):
            await a.call(coro, -1)
        with pytest.raises(CircuitOpenError):
            await coro(1)
        with pytest.raises(CircuitOpenError):
            async with a:
                pass
        await a.storage.aclose()

    asyncio.run(main())
    with pytest.raises(CircuitOpenError):
        sync(1)
    stats = a.get_stats()
    assert set(stats) == set(riprap.SharedCircuitBreakerStats.__required_keys__)
    # a.call(sync, ...) and a.call(coro, ...) pass the breaker twice (call + decorator).
    assert (stats["total_successes"], stats["total_failures"]) == (5, 3)
    assert (stats["total_rejected"], stats["shared"]) == (3, "state")
    assert asyncio.iscoroutinefunction(coro)


def test_reset_and_force_open_act_for_everyone(url: str, clock: ManualClock) -> None:
    a, b = shared(url, clock), shared(url, clock)
    a.force_open()
    assert b.state is CircuitState.OPEN
    b.reset()
    assert a.state is CircuitState.CLOSED
    assert "storage=" in repr(a)


def test_breaker_validation(url: str) -> None:
    with pytest.raises(ValueError, match="name must not be empty"):
        CircuitBreaker("", storage=url)
    with pytest.raises(TypeError, match="storage must be a redis:// URL"):
        CircuitBreaker("x", storage=1)

    class Mine(CircuitBreaker):
        pass

    with pytest.raises(TypeError, match=r"storage= is supported on riprap\.Circuit"):
        Mine("x", storage=url)
