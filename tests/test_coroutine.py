"""An awaited call of a decorated coroutine function: riprap's `Coroutine` (both backends).

Retry and the breaker return a `Coroutine` that drives the user's coroutine and does the
primitive's work around it; the limiter returns the user's own coroutine when the token is there
at once. These tests pin what users can observe: work happens when the call is first resumed
(not when the function is called), every exit path gives the permit back exactly once, asyncio
treats the object as a coroutine everywhere, and control-flow exceptions pass through.
"""

from __future__ import annotations

import asyncio
import collections.abc
import gc
import inspect

import pytest

import riprap
from riprap.testing import ManualClock


def _breaker(clock: ManualClock, **fields: object) -> riprap.CircuitBreaker:
    config = riprap.CircuitBreakerConfig(**fields)  # type: ignore[arg-type]
    return riprap.CircuitBreaker("coro", config, clock=clock)


def test_a_coroutine_is_a_coroutine_to_asyncio(clock: ManualClock) -> None:
    breaker = _breaker(clock)

    @breaker
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    async def main() -> list[int]:
        coro = fetch(1)
        assert isinstance(coro, collections.abc.Coroutine)
        assert inspect.isawaitable(coro)
        assert asyncio.iscoroutine(coro)
        task = asyncio.create_task(coro)
        assert "fetch" in repr(task)
        first = await task
        rest = await asyncio.gather(fetch(2), fetch(3))
        waited = await asyncio.wait_for(fetch(4), timeout=5)
        return [first, *rest, waited]

    assert asyncio.run(main()) == [2, 4, 6, 8]
    assert breaker.get_stats()["total_successes"] == 4


def test_work_happens_when_first_resumed_not_when_called(clock: ManualClock) -> None:
    breaker = _breaker(clock, half_open_max_calls=1)
    breaker.force_open()

    @breaker
    async def fetch() -> int:
        return 1

    # Calling rejects nothing and takes nothing: the rejection comes with the await.
    coro = fetch()
    with pytest.raises(riprap.CircuitOpenError):
        asyncio.run(_await(coro))
    clock.advance(60.0)
    # Half-open with one trial slot: a call that is created and dropped takes no slot, so a
    # later call still gets it.
    unused = fetch()
    unused.close()
    del unused
    gc.collect()
    assert asyncio.run(_await(fetch())) == 1


async def _await(coro: object) -> object:
    return await coro  # type: ignore[misc]


@pytest.mark.parametrize("how", ["task cancel", "wait_for timeout", "close", "dropped"])
def test_every_way_out_gives_the_permit_back(how: str, clock: ManualClock) -> None:
    breaker = _breaker(clock, half_open_max_calls=1)
    breaker.force_open()
    clock.advance(60.0)  # half-open: one trial slot, so a leaked permit would show

    @breaker
    async def slow() -> int:
        await asyncio.sleep(10)
        return 1

    async def main() -> None:
        if how == "task cancel":
            task = asyncio.create_task(slow())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        elif how == "wait_for timeout":
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(slow(), timeout=0.001)
        else:
            coro = slow()
            coro.send(None)  # started: it holds the trial slot, suspended in sleep
            assert breaker.get_stats()["half_open_calls"] == 1
            if how == "close":
                coro.close()
            else:
                del coro
                gc.collect()

    asyncio.run(main())
    stats = breaker.get_stats()
    assert stats["half_open_calls"] == 0
    assert stats["state"] == "half_open"
    assert stats["total_failures"] == 0  # a control-flow exit is never a failure

    @breaker
    async def quick() -> int:
        return 7

    assert asyncio.run(_await(quick())) == 7  # the slot is free again


def test_outcomes_are_recorded_and_exceptions_pass_through(clock: ManualClock) -> None:
    breaker = _breaker(clock, failure_threshold=2)

    @breaker
    async def fail() -> None:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError, match="down"):
            asyncio.run(_await(fail()))
    assert breaker.state is riprap.CircuitState.OPEN
    with pytest.raises(riprap.CircuitOpenError):
        asyncio.run(_await(fail()))


def test_throw_and_send_are_forwarded(clock: ManualClock) -> None:
    breaker = _breaker(clock)

    @breaker
    async def echo() -> object:
        class Box:
            def __await__(self):  # type: ignore[no-untyped-def]
                received = yield "ready"
                return received

        try:
            return await Box()
        except KeyError as e:
            return f"caught {e}"

    coro = echo()
    assert coro.send(None) == "ready"
    with pytest.raises(StopIteration) as stop:
        coro.send("hello")
    assert stop.value.value == "hello"

    coro = echo()
    assert coro.send(None) == "ready"
    with pytest.raises(StopIteration) as stop:
        coro.throw(KeyError("k"))
    assert stop.value.value == "caught 'k'"
    with pytest.raises(RuntimeError, match="already awaited"):
        coro.send(None)
    assert breaker.get_stats()["total_successes"] == 2


def test_thrown_in_before_it_starts_the_function_never_runs(clock: ManualClock) -> None:
    breaker = _breaker(clock)
    ran = []

    @breaker
    async def fetch() -> None:
        ran.append(1)

    coro = fetch()
    with pytest.raises(ValueError, match="early"):
        coro.throw(ValueError("early"))
    assert ran == []
    assert breaker.get_stats()["total_calls"] == 0


def test_retry_hands_over_to_its_continuation(clock: ManualClock) -> None:
    calls = []

    @riprap.retry(max_attempts=4, base_delay=1.0, jitter=False, clock=clock)
    async def flaky(x: int, *, y: int) -> int:
        calls.append(clock.now())
        if len(calls) < 3:
            raise ConnectionError("reset")
        return x + y

    assert asyncio.run(_await(flaky(1, y=2))) == 3
    assert calls == [0.0, 1.0, 3.0]


def test_retry_control_flow_exceptions_are_never_retried(clock: ManualClock) -> None:
    calls = []

    @riprap.retry(
        max_attempts=5,
        base_delay=0.0,
        retryable_exceptions=(BaseException,),
        clock=clock,
    )
    async def interrupted() -> None:
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(_await(interrupted()))
    assert calls == [1]


def test_a_limited_call_takes_its_token_when_awaited_not_when_called(
    clock: ManualClock,
) -> None:
    limiter = riprap.RateLimiter(1.0, 1.0, clock=clock)

    @limiter
    async def fetch() -> int:
        return 5

    first = fetch()
    assert type(first).__name__ == "Coroutine"
    # Called, not awaited: no token yet (an outer layer that rejects first spends none).
    assert limiter.get_stats()["admitted"] == 0
    assert asyncio.run(_await(first)) == 5
    assert limiter.get_stats()["admitted"] == 1
    never = fetch()
    never.close()
    assert limiter.get_stats()["admitted"] == 1
    # No token now: the waiting path, which reserves when first resumed and waits on the clock.
    second = fetch()
    assert asyncio.run(_await(second)) == 5
    assert clock.now() == 1.0
    stats = limiter.get_stats()
    assert (stats["admitted"], stats["waited"], stats["rejected"]) == (2, 1, 0)


def test_a_refused_limited_call_raises_at_the_await(clock: ManualClock) -> None:
    limiter = riprap.RateLimiter(1.0, 1.0, on_limit="raise", clock=clock)

    @limiter
    async def fetch() -> int:
        return 5

    assert asyncio.run(_await(fetch())) == 5
    coro = fetch()  # no error yet: the await raises, as an `async def` would
    with pytest.raises(riprap.RateLimitExceeded):
        asyncio.run(_await(coro))
