"""Retry sleeps and limiter waits never cross an enclosing `riprap.deadline` / `riprap.timeout`.

A retry whose next sleep would end after the deadline stops at once with the caller's own
exception (no sleep towards the deadline, no extra attempt), as the policy's own `deadline`
does. A limiter wait that would end after it is not started: `TimeoutExceededError` at once, the
reservation given back. Both backends, sync and async, on a ManualClock.
"""

from __future__ import annotations

import asyncio

import pytest

import riprap
from riprap.testing import ManualClock


def test_a_retry_with_a_long_backoff_inside_a_short_deadline_gives_up_at_once(
    clock: ManualClock,
) -> None:
    calls: list[float] = []

    @riprap.retry(max_attempts=5, base_delay=10.0, jitter=False, clock=clock)
    def flaky() -> None:
        calls.append(clock.now())
        raise ConnectionError("reset")

    with (
        riprap.deadline(1.0, clock=clock),
        pytest.raises(ConnectionError, match="reset"),
    ):
        flaky()
    assert calls == [0.0]  # one attempt, and no sleep at all
    assert clock.now() == 0.0

    # Without the deadline the same function sleeps and retries.
    calls.clear()
    with pytest.raises(ConnectionError):
        flaky()
    assert len(calls) == 5


def test_a_retry_stops_before_the_sleep_that_would_cross_the_deadline(
    clock: ManualClock,
) -> None:
    calls: list[float] = []

    @riprap.retry(max_attempts=10, base_delay=1.0, jitter=False, clock=clock)
    def flaky() -> None:
        calls.append(clock.now())
        raise ConnectionError("reset")

    # Sleeps of 1, 2, 4: the third would end at 7 > 5, so attempts run at 0, 1 and 3.
    with riprap.deadline(5.0, clock=clock), pytest.raises(ConnectionError):
        flaky()
    assert calls == [0.0, 1.0, 3.0]


def test_async_and_code_block_retries_respect_the_deadline(clock: ManualClock) -> None:
    calls = 0

    @riprap.retry(max_attempts=5, base_delay=10.0, jitter=False, clock=clock)
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("reset")

    async def main() -> None:
        async with riprap.deadline(1.0, clock=clock):
            await flaky()

    with pytest.raises(ConnectionError):
        asyncio.run(main())
    assert calls == 1

    attempts = 0
    policy = riprap.RetryPolicy(max_attempts=5, base_delay=10.0, jitter=False)

    def block() -> None:
        nonlocal attempts
        for attempt in policy.attempts(clock=clock):
            with attempt:
                attempts += 1
                raise ConnectionError("reset")

    with riprap.deadline(1.0, clock=clock), pytest.raises(ConnectionError):
        block()
    assert attempts == 1


def test_a_limiter_wait_that_would_cross_the_deadline_is_not_started(
    clock: ManualClock,
) -> None:
    limiter = riprap.RateLimiter(1.0, 1.0, clock=clock)  # one token per second
    assert limiter.try_acquire()

    with riprap.deadline(0.5, clock=clock):
        with pytest.raises(riprap.TimeoutExceededError):
            limiter.acquire()
        with pytest.raises(riprap.TimeoutExceededError), limiter:
            pass
    assert clock.now() == 0.0  # nothing slept
    # The refused waits gave their reservations back: the next token is still due at 1.0.
    clock.advance(1.0)
    assert limiter.try_acquire()
    stats = limiter.get_stats()
    assert (stats["admitted"], stats["waited"]) == (2, 0)

    # A wait that fits in the deadline goes ahead.
    with riprap.deadline(2.0, clock=clock):
        limiter.acquire()
    assert clock.now() == 2.0


def test_async_limiter_waits_respect_the_deadline(clock: ManualClock) -> None:
    limiter = riprap.RateLimiter(1.0, 1.0, clock=clock)
    keyed = riprap.KeyedRateLimiter(1.0, 1.0, clock=clock)
    assert limiter.try_acquire()
    assert keyed.try_acquire("k")

    @limiter
    async def limited() -> int:
        return 1

    async def main() -> None:
        async with riprap.deadline(0.5, clock=clock):
            with pytest.raises(riprap.TimeoutExceededError):
                await limiter.acquire_async()
            with pytest.raises(riprap.TimeoutExceededError):
                await keyed.acquire_async("k")
            with pytest.raises(riprap.TimeoutExceededError):
                await limited()

    asyncio.run(main())
    assert clock.now() == 0.0
    clock.advance(1.0)
    assert limiter.try_acquire()  # every refused wait gave its slot back
    assert keyed.try_acquire("k")
