"""`riprap.chaos.inject`: faults and latency on purpose (both backends, ManualClock)."""

from __future__ import annotations

import asyncio

import pytest

import riprap
import riprap.chaos
from riprap.testing import ManualClock


def _outcomes(func: object, n: int) -> list[bool]:
    out = []
    for _ in range(n):
        try:
            func()  # type: ignore[operator]
            out.append(True)
        except ConnectionError:
            out.append(False)
    return out


def test_rate_one_fails_every_call_and_rate_zero_none() -> None:
    always = riprap.chaos.inject(rate=1.0)(lambda: "ok")
    never = riprap.chaos.inject(rate=0.0)(lambda: "ok")
    assert _outcomes(always, 200) == [False] * 200
    assert _outcomes(never, 200) == [True] * 200


def test_a_seeded_run_is_reproducible_and_near_its_rate() -> None:
    runs = [
        _outcomes(riprap.chaos.inject(rate=0.3, seed=11)(lambda: 1), 2000)
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    failures = runs[0].count(False)
    assert 500 < failures < 700  # 30 % of 2000, well within the binomial spread
    other = _outcomes(riprap.chaos.inject(rate=0.3, seed=12)(lambda: 1), 2000)
    assert other != runs[0]


def test_the_function_does_not_run_when_a_fault_is_injected() -> None:
    calls = []
    chaos = riprap.chaos.inject(exception=TimeoutError, rate=1.0)

    @chaos
    def work() -> None:
        calls.append(1)

    with pytest.raises(TimeoutError, match=r"injected by riprap\.chaos"):
        work()
    assert calls == []
    assert chaos.get_stats() == {"calls": 1, "faults": 1, "delayed": 0}


def test_enabled_switches_at_run_time() -> None:
    chaos = riprap.chaos.inject(rate=1.0)
    work = chaos(lambda: "ok")
    assert _outcomes(work, 3) == [False] * 3
    chaos.enabled = False
    assert _outcomes(work, 3) == [True] * 3
    chaos.enabled = True
    assert _outcomes(work, 1) == [False]
    off = riprap.chaos.inject(rate=1.0, enabled=False)
    assert _outcomes(off(lambda: 1), 2) == [True, True]


def test_fresh_exceptions_from_an_instance_or_a_factory() -> None:
    template = ConnectionError("down")
    work = riprap.chaos.inject(exception=template, rate=1.0)(lambda: 1)
    seen = []
    for _ in range(3):
        with pytest.raises(ConnectionError, match="down") as info:
            work()
        seen.append(info.value)
    assert template not in seen
    assert len({id(e) for e in seen}) == 3
    made = riprap.chaos.inject(exception=lambda: KeyError("k"), rate=1.0)(lambda: 1)
    with pytest.raises(KeyError):
        made()


def test_latency_waits_on_the_clock_and_respects_deadlines(clock: ManualClock) -> None:
    slow = riprap.chaos.inject(rate=0.0, latency=2.0, clock=clock)(lambda: "ok")
    assert slow() == "ok"
    assert clock.now() == 2.0
    with riprap.deadline(0.5, clock=clock), pytest.raises(riprap.TimeoutExceededError):
        slow()
    assert clock.now() == 2.5  # waited the time that was left, then gave up

    ranged = riprap.chaos.inject(rate=0.0, latency=(1.0, 3.0), seed=3, clock=clock)
    start = clock.now()
    ranged(lambda: None)()
    assert 1.0 <= clock.now() - start <= 3.0


def test_async_faults_and_latency(clock: ManualClock) -> None:
    chaos = riprap.chaos.inject(rate=1.0, latency=1.0, clock=clock)

    @chaos
    async def fetch() -> int:
        return 1

    with pytest.raises(ConnectionError):
        asyncio.run(fetch())
    assert clock.now() == 1.0

    async def bounded() -> None:
        async with riprap.deadline(0.25, clock=clock):
            await fetch()

    with pytest.raises(riprap.TimeoutExceededError):
        asyncio.run(bounded())


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"rate must be <= 1\.0"):
        riprap.chaos.inject(rate=1.5)
    with pytest.raises(ValueError, match=r"rate must be >= 0\.0"):
        riprap.chaos.inject(rate=-0.1)
    with pytest.raises(TypeError, match="exception must be"):
        riprap.chaos.inject(exception=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency"):
        riprap.chaos.inject(latency=(3.0, 1.0))
    with pytest.raises(TypeError, match="enabled must be a bool"):
        riprap.chaos.inject(enabled=1)  # type: ignore[arg-type]


def test_chaos_in_a_pipeline_is_retried_and_counted(clock: ManualClock) -> None:
    breaker = riprap.CircuitBreaker(
        "chaos", riprap.CircuitBreakerConfig(failure_threshold=100), clock=clock
    )
    retry = riprap.RetryDecorator(
        riprap.RetryPolicy(max_attempts=2, base_delay=0.0), clock=clock
    )
    chaos = riprap.chaos.inject(rate=1.0, seed=1)
    work = riprap.Pipeline(retry, breaker, chaos)(lambda: "ok")
    with pytest.raises(ConnectionError):
        work()
    assert chaos.get_stats()["faults"] == 2  # retried once
    assert breaker.get_stats()["total_failures"] == 2
