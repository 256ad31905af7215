"""CircuitBreaker(storage=..., shared="quorum"): each process keeps its own breaker and votes;
the circuit opens for all only when at least `quorum` of the live processes vote open. Objects in
one process stand in for processes here (each is a voter of its own); test_redis_processes.py
runs real ones."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from riprap import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from riprap.testing import ManualClock

CONFIG = CircuitBreakerConfig(failure_threshold=2, timeout=5.0, success_threshold=1)


def voters(url: str, clock: ManualClock, n: int = 4, **kw: Any) -> list[CircuitBreaker]:
    return [
        CircuitBreaker(
            "dep",
            CONFIG,
            storage=url,
            clock=clock,
            time_source="client",
            shared="quorum",
            quorum=kw.get("quorum", 0.5),
        )
        for _ in range(n)
    ]


def ok(breaker: CircuitBreaker) -> bool:
    """Whether a call got through."""
    try:
        with breaker:
            pass
    except CircuitOpenError:
        return False
    return True


def fail(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        with contextlib.suppress(ValueError, CircuitOpenError), breaker:
            raise ValueError("down from here")


def test_one_process_opens_only_its_own_view_two_open_it_for_all(
    url: str, r: Any, clock: ManualClock
) -> None:
    fleet = voters(url, clock)
    assert all(ok(b) for b in fleet)  # every process has voted "closed"
    fail(fleet[0])
    assert [ok(b) for b in fleet] == [False, True, True, True]
    assert fleet[1].state is CircuitState.CLOSED
    stats = fleet[1].get_stats()
    assert (stats["quorum_open"], stats["quorum_live"], stats["shared"]) == (
        1,
        4,
        "quorum",
    )
    fail(fleet[1])  # 2 of 4 live processes vote open: at least half
    assert [ok(b) for b in fleet] == [False] * 4
    assert fleet[3].state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as info, fleet[2]:
        pass
    assert 0.0 < info.value.retry_after <= 5.0
    for key in r.keys("*"):
        assert r.pttl(key) > 0
    # The voters' own breakers half-open after their timeout; their trial calls succeed,
    # they vote "closed" again, and the circuit closes for everyone.
    clock.advance(5.0)
    assert ok(fleet[0])
    assert ok(fleet[1])
    assert [ok(b) for b in fleet] == [True] * 4
    rejected = fleet[2].get_stats()["total_rejected"]
    assert rejected == 2  # two quorum rejections: counted, never failures


def test_votes_of_processes_that_stop_expire(url: str, clock: ManualClock) -> None:
    fleet = voters(url, clock)
    for b in fleet:
        assert ok(b)
    fail(fleet[0])
    fail(fleet[1])
    assert not ok(fleet[2])
    # Processes 0 and 1 die: their votes live max(timeout, 1 s), then drop out.
    clock.advance(5.0)
    assert ok(fleet[2])
    stats = fleet[3].get_stats()
    assert (stats["quorum_open"], stats["quorum_live"]) == (0, 2)


def test_a_process_in_the_minority_still_closes_by_itself(
    url: str, clock: ManualClock
) -> None:
    fleet = voters(url, clock, n=3, quorum=0.9)
    for b in fleet:
        assert ok(b)
    fail(fleet[0])
    fail(fleet[1])
    assert ok(fleet[2])  # 2 of 3 is below 0.9
    assert fleet[0].state is CircuitState.OPEN
    clock.advance(5.0)
    assert fleet[0].state is CircuitState.HALF_OPEN
    assert ok(fleet[0])
    assert fleet[0].state is CircuitState.CLOSED


def test_quorum_async_paths(url: str, clock: ManualClock) -> None:
    a, b = voters(url, clock, n=2)

    @b
    async def call() -> str:
        return "ok"

    async def main() -> None:
        assert await call() == "ok"
        async with a:
            pass
        fail(a)
        with pytest.raises(CircuitOpenError):  # 1 of 2 live: the quorum (0.5) is met
            await call()
        with pytest.raises(CircuitOpenError):
            await b.call(lambda: None)
        await b.storage.aclose()

    asyncio.run(main())


def test_quorum_validation(url: str) -> None:
    with pytest.raises(ValueError, match=r"quorum must be > 0\.0"):
        CircuitBreaker("x", storage=url, shared="quorum", quorum=0)
    with pytest.raises(TypeError, match="quorum must be a number"):
        CircuitBreaker("x", storage=url, shared="quorum", quorum="half")
