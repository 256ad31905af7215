"""What changes when two layers of a pipeline swap places (the README's "Choosing an order").

Each test runs the same scripted dependency through two orders of the same primitives, on a
ManualClock, and pins the difference the README describes: what a retry, a breaker, a limiter
or a bulkhead sees and spends in each order. The last tests pin which orders `warnings()`
flags, starting from the recommended one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import riprap
from riprap.testing import ManualClock


def no_jitter(clock: ManualClock, **fields: Any) -> riprap.RetryDecorator:
    policy = riprap.RetryPolicy(jitter=False, **fields)
    return riprap.RetryDecorator(policy, clock=clock)


def outcome(call: Callable[[], object]) -> str:
    try:
        call()
    except Exception as e:
        return type(e).__name__
    return "ok"


def test_a_fallback_inside_retry_answers_the_first_failure_and_nothing_is_retried(
    clock: ManualClock,
) -> None:
    def stale(agent_id: str) -> str:
        return "stale"

    def calls_with(fallback_outermost: bool) -> int:
        fallback = riprap.fallback(stale, clock=clock)
        retry = no_jitter(clock, max_attempts=3, base_delay=1.0)
        calls = 0

        @riprap.Pipeline(
            *([fallback, retry] if fallback_outermost else [retry, fallback])
        )
        def status(agent_id: str) -> str:
            nonlocal calls
            calls += 1
            raise ConnectionError("reset")

        assert status("a1") == "stale"
        return calls

    assert calls_with(fallback_outermost=True) == 3
    assert calls_with(fallback_outermost=False) == 1


def test_retry_outside_the_breaker_counts_attempts_and_stops_when_it_opens(
    clock: ManualClock,
) -> None:
    attempts: dict[str, int] = {}
    results: dict[str, list[str]] = {}

    def run(order: str) -> None:
        breaker = riprap.CircuitBreaker(
            order, riprap.CircuitBreakerConfig(failure_threshold=3), clock=clock
        )
        retry = no_jitter(clock, max_attempts=5, base_delay=1.0)
        attempts[order] = 0

        @riprap.Pipeline(
            *([retry, breaker] if order == "outside" else [breaker, retry])
        )
        def send() -> None:
            attempts[order] += 1
            raise ConnectionError("refused")

        results[order] = [outcome(send) for _ in range(4)]
        assert breaker.state is riprap.CircuitState.OPEN

    run("outside")
    run("inside")
    # Outside: each attempt is an outcome for the breaker; the 4th attempt finds it open and
    # CircuitOpenError (riprap's own rejection) is not retried.
    assert attempts["outside"] == 3
    assert results["outside"] == ["CircuitOpenError"] * 4
    # Inside: the breaker sees one failure per call, after all its attempts.
    assert attempts["inside"] == 3 * 5
    assert results["inside"] == ["ConnectionError"] * 3 + ["CircuitOpenError"]


@pytest.mark.parametrize("cutter", ["timeout", "bulkhead timeout"])
def test_a_hang_cut_outside_the_breaker_never_opens_it(
    clock: ManualClock, cutter: str
) -> None:
    opened: dict[str, bool] = {}
    for order in ("cut inside", "cut outside"):
        breaker = riprap.CircuitBreaker(
            f"{cutter} {order}",
            riprap.CircuitBreakerConfig(failure_threshold=2),
            clock=clock,
        )
        cut: Any = (
            riprap.timeout(1.0, clock=clock)
            if cutter == "timeout"
            else riprap.Bulkhead("cut", riprap.BulkheadConfig(timeout=1.0), clock=clock)
        )
        pipeline = riprap.Pipeline(
            *([breaker, cut] if order == "cut inside" else [cut, breaker])
        )

        @pipeline
        async def hang() -> None:
            await clock.asleep(30.0)

        async def run() -> list[str]:
            seen = []
            for _ in range(3):
                try:
                    await hang()
                except Exception as e:
                    seen.append(type(e).__name__)
            return seen

        seen = asyncio.run(run())
        assert (
            seen[:2]
            == [
                "TimeoutExceededError"
                if cutter == "timeout"
                else "BulkheadTimeoutError"
            ]
            * 2
        )
        opened[order] = seen[2] == "CircuitOpenError"
        assert opened[order] is (breaker.state is riprap.CircuitState.OPEN)
        flagged = any(
            "never opens" in w or "cancellation" in w for w in pipeline.warnings()
        )
        assert flagged is (order == "cut outside")
    assert opened == {"cut inside": True, "cut outside": False}


def test_a_timeout_inside_retry_bounds_each_attempt_outside_it_the_whole_call(
    clock: ManualClock,
) -> None:
    script: list[float] = []
    attempts = 0

    async def dependency() -> str:
        nonlocal attempts
        attempts += 1
        await clock.asleep(script.pop(0))
        return "ok"

    per_attempt = riprap.Pipeline(
        no_jitter(clock, max_attempts=3, base_delay=1.0),
        riprap.timeout(2.0, clock=clock),
    )
    script[:] = [10.0, 10.0, 0.5]  # two attempts hang, the third answers
    assert asyncio.run(per_attempt.acall(dependency)) == "ok"
    assert attempts == 3

    whole_call = riprap.Pipeline(
        riprap.timeout(2.0, clock=clock),
        no_jitter(clock, max_attempts=3, base_delay=1.0),
    )
    attempts, script[:] = 0, [10.0, 10.0, 0.5]
    with pytest.raises(riprap.TimeoutExceededError):
        asyncio.run(whole_call.acall(dependency))
    assert attempts == 1  # the hang used the whole budget

    # An outer bound also stops the retries: no backoff sleep is started past it.
    async def refused() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("refused")

    bounded = riprap.Pipeline(
        riprap.timeout(5.0, clock=clock),
        no_jitter(clock, max_attempts=5, base_delay=2.0),
    )
    attempts = 0
    with pytest.raises(ConnectionError):  # the caller's own error, not a timeout
        asyncio.run(bounded.acall(refused))
    assert attempts == 2  # at 0 s and 2 s; the next sleep (4 s) would end past 5 s


def test_a_limiter_inside_retry_charges_every_attempt(clock: ManualClock) -> None:
    admitted: dict[str, int] = {}
    for order in ("limiter inside", "limiter outside"):
        limiter = riprap.RateLimiter(1.0, 10.0, clock=clock)
        retry = no_jitter(clock, max_attempts=3, base_delay=0.0)
        layers = [retry, limiter] if order == "limiter inside" else [limiter, retry]
        pipeline = riprap.Pipeline(*layers)

        @pipeline
        def send() -> None:
            raise ConnectionError("refused")

        assert outcome(send) == "ConnectionError"
        admitted[order] = limiter.get_stats()["admitted"]
        flagged = any("retries bypass the limit" in w for w in pipeline.warnings())
        assert flagged is (order == "limiter outside")
    assert admitted == {"limiter inside": 3, "limiter outside": 1}


def test_a_limiter_outside_the_bulkhead_spends_tokens_on_calls_it_turns_away(
    clock: ManualClock,
) -> None:
    def tokens_spent(limiter_inside: bool) -> int:
        bulkhead = riprap.Bulkhead(
            f"limiter inside: {limiter_inside}",
            riprap.BulkheadConfig(max_concurrent_calls=1, max_queue_size=0),
            clock=clock,
        )
        limiter = riprap.RateLimiter(1.0, 10.0, on_limit="raise", clock=clock)
        layers = [bulkhead, limiter] if limiter_inside else [limiter, bulkhead]

        @riprap.Pipeline(*layers)
        async def send() -> str:
            return "sent"

        async def run() -> None:
            async with bulkhead:  # another caller holds the only slot
                for _ in range(4):
                    task = asyncio.create_task(send())  # not this task: no re-entry
                    with pytest.raises(riprap.BulkheadRejectedError):
                        await task
            assert await send() == "sent"

        asyncio.run(run())
        return limiter.get_stats()["admitted"]

    assert tokens_spent(limiter_inside=True) == 1
    assert tokens_spent(limiter_inside=False) == 5


def test_a_bulkhead_outside_retry_holds_its_slot_through_backoff(
    clock: ManualClock,
) -> None:
    held: dict[str, list[int]] = {}
    for order in ("bulkhead inside", "bulkhead outside"):
        bulkhead = riprap.Bulkhead(order, clock=clock)
        held[order] = []
        retry = riprap.RetryDecorator(
            riprap.RetryPolicy(max_attempts=3, base_delay=1.0, jitter=False),
            clock=clock,
            on_retry=lambda *_, b=bulkhead, seen=held[order]: seen.append(
                b.get_stats()["active_calls"]
            ),
        )
        layers = [retry, bulkhead] if order == "bulkhead inside" else [bulkhead, retry]

        @riprap.Pipeline(*layers)
        def send() -> None:
            raise ConnectionError("refused")

        assert outcome(send) == "ConnectionError"
    # Slots in use while the retry sleeps before attempts 2 and 3.
    assert held == {"bulkhead inside": [0, 0], "bulkhead outside": [1, 1]}


def recommended(clock: ManualClock, **retry_fields: Any) -> list[Any]:
    return [
        riprap.fallback(default=None, clock=clock),
        riprap.RetryDecorator(riprap.RetryPolicy(**retry_fields), clock=clock),
        riprap.CircuitBreaker("order", clock=clock),
        riprap.Bulkhead("order", clock=clock),
        riprap.RateLimiter(10.0, clock=clock),
        riprap.timeout(2.0, clock=clock),
    ]


def test_the_recommended_order_is_flagged_only_without_a_bound_on_the_whole_call(
    clock: ManualClock,
) -> None:
    assert riprap.Pipeline(*recommended(clock, deadline=10.0)).warnings() == []
    layers = recommended(clock)
    (warning,) = riprap.Pipeline(*layers).warnings()
    assert "timeout(2s) is inside retry" in warning
    # An outer timeout bounds the whole call as well as a deadline does.
    outer = riprap.timeout(10.0, clock=clock)
    assert riprap.Pipeline(layers[0], outer, *layers[1:]).warnings() == []


@pytest.mark.parametrize(
    ("swap", "flagged"),
    [
        (0, "the fallback is inside"),  # fallback <-> retry
        (1, None),  # retry <-> breaker: a trade-off, see the test above
        (2, None),  # breaker <-> bulkhead: the timeout inside still cuts hangs first
        (3, None),  # bulkhead <-> limiter: a trade-off
        (4, None),  # limiter <-> timeout
    ],
)
def test_swapping_two_neighbours_of_the_recommended_order(
    clock: ManualClock, swap: int, flagged: str | None
) -> None:
    layers = recommended(clock, deadline=10.0)
    layers[swap], layers[swap + 1] = layers[swap + 1], layers[swap]
    warnings = riprap.Pipeline(*layers).warnings()
    if flagged is None:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert flagged in warnings[0]
