"""A bulkhead-decorated coroutine function: each call is a riprap `Coroutine`.

While a slot is free, the call takes it, runs its first step and, when that step ends the call,
hands the slot back without any Python continuation; waiting for a slot, a call that suspends
and a call that overran on a manual clock continue in `riprap._bulkhead_async`. These tests
watch which of those a call went through, and that every path gives its slot back.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from bulkhead_helpers import bulkhead

import riprap
from riprap import BulkheadRejectedError, BulkheadTimeoutError, _bulkhead_async
from riprap.testing import ManualClock


@pytest.fixture
def routes(monkeypatch: pytest.MonkeyPatch) -> Iterator[collections.Counter[str]]:
    """Counts the continuation's entry points each call went through."""
    seen: collections.Counter[str] = collections.Counter()
    for name in ("suspended", "ended", "_acquire_then_run"):
        real = getattr(_bulkhead_async, name)

        def spy(*args: Any, _real: Any = real, _name: str = name) -> Any:
            seen[_name] += 1
            return _real(*args)

        monkeypatch.setattr(_bulkhead_async, name, spy)
    return seen


def test_the_wrapper_is_a_native_coroutine_function() -> None:
    bh = bulkhead(2)

    async def work(x: int) -> int:
        return x

    wrapped = bh(work)
    assert type(wrapped).__name__ == "BulkheadAsyncCall"
    assert inspect.iscoroutinefunction(wrapped)
    assert wrapped.__wrapped__ is work
    call = wrapped(1)
    assert type(call).__name__ == "Coroutine"
    # Not awaited: no slot was taken, and closing it is quiet.
    assert bh.get_stats()["active_calls"] == 0
    call.close()


def test_a_call_that_never_suspends_needs_no_continuation(
    routes: collections.Counter[str],
) -> None:
    bh = bulkhead(1)

    @bh
    async def work(x: int) -> int:
        assert bh.get_stats()["active_calls"] == 1
        return x * 2

    @bh
    async def fail() -> None:
        raise ValueError("boom")

    async def main() -> None:
        assert await work(21) == 42
        with pytest.raises(ValueError, match="boom"):
            await fail()

    asyncio.run(main())
    assert routes == {}
    stats = bh.get_stats()
    assert (stats["active_calls"], stats["admitted_calls"]) == (0, 2)


def test_a_call_that_suspends_goes_on_under_the_watchdog(
    routes: collections.Counter[str],
) -> None:
    bh = bulkhead(1)

    @bh
    async def work() -> str:
        await asyncio.sleep(0)
        assert bh.get_stats()["active_calls"] == 1
        return "done"

    assert asyncio.run(work()) == "done"
    assert routes["suspended"] == 1
    assert bh.get_stats()["active_calls"] == 0


def test_a_call_that_finds_no_slot_waits_for_one(
    routes: collections.Counter[str],
) -> None:
    bh = bulkhead(1, queue=4)
    order: list[str] = []

    @bh
    async def work(name: str) -> None:
        order.append(f"{name} in")
        await asyncio.sleep(0)
        order.append(f"{name} out")

    async def main() -> None:
        await asyncio.gather(work("a"), work("b"))

    asyncio.run(main())
    assert order == ["a in", "a out", "b in", "b out"]
    assert routes["_acquire_then_run"] == 1
    assert bh.get_stats()["active_calls"] == 0


def test_a_call_that_overran_on_a_manual_clock_times_out_when_it_ends(
    clock: ManualClock, routes: collections.Counter[str]
) -> None:
    bh = riprap.Bulkhead("db", riprap.BulkheadConfig(timeout=1.0), clock=clock)

    @bh
    async def slow(seconds: float) -> str:
        clock.advance(seconds)  # no suspension: the first step is the whole call
        return "late"

    async def main() -> None:
        assert await slow(0.5) == "late"
        with pytest.raises(BulkheadTimeoutError):
            await slow(1.0)

    asyncio.run(main())
    assert routes["ended"] == 1
    stats = bh.get_stats()
    assert (stats["active_calls"], stats["timed_out_calls"]) == (0, 1)


def test_a_rejection_closes_the_functions_coroutine_and_counts() -> None:
    bh = bulkhead(1, queue=0)
    started: list[str] = []

    @bh
    async def work() -> None:
        started.append("ran")

    async def main() -> None:
        async with bh:
            inner = asyncio.ensure_future(work())
            with pytest.raises(BulkheadRejectedError):
                await inner

    asyncio.run(main())
    gc.collect()
    assert started == []
    stats = bh.get_stats()
    assert (stats["active_calls"], stats["rejected_calls"]) == (0, 1)


def test_control_flow_from_the_first_step_passes_and_the_slot_comes_back() -> None:
    bh = bulkhead(1)

    @bh
    async def stop() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(stop())
    assert bh.get_stats()["active_calls"] == 0


def test_the_first_step_marks_the_task_as_holding_a_slot() -> None:
    # Tasks created meanwhile copy the mark, so one that would wait for this bulkhead is
    # rejected instead of deadlocking its creator; the native first step sets it too.
    bh = bulkhead(1)
    marks: list[bool] = []

    @bh
    async def work() -> None:
        marks.append(bh._holding.get())

    async def main() -> None:
        await work()
        marks.append(bh._holding.get())

    asyncio.run(main())
    assert marks == [True, False]
