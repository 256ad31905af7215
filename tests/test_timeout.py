"""Timeouts and deadlines: `riprap.timeout`, `riprap.deadline`, nesting, `remaining()`,
abandoned sync work (EtaCassiopeia/zio-openfeature#263 leaked a thread per timeout), and the race
between a timeout and an outside cancellation (python/cpython#86296). Runs on the active backend.
The few real-time audits are bounded to ~1 s in total.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from typing import Any

import pytest

import riprap
from riprap import TimeoutExceededError, _deadlines, _timeout
from riprap.testing import ManualClock


def test_arguments_are_checked() -> None:
    for bad, error in (
        (float("nan"), ValueError),
        (-1.0, ValueError),
        (True, TypeError),
    ):
        with pytest.raises(error, match="seconds"):
            riprap.timeout(bad)
        with pytest.raises(error, match="seconds"):
            riprap.deadline(bad)
    with pytest.raises(ValueError, match=r"seconds must be > 0\.0, got 0\.0"):
        riprap.timeout(0)
    riprap.deadline(0)  # a deadline of 0 is allowed: it has passed
    with pytest.raises(TypeError, match="clock must be"):
        riprap.deadline(1, clock="monotonic")


def test_remaining_is_the_earliest_deadline_in_force(clock: ManualClock) -> None:
    assert _timeout.remaining() is None
    with riprap.deadline(1.0, clock=clock) as outer:
        assert _timeout.remaining() == 1.0
        with riprap.deadline(5.0, clock=clock):
            assert _timeout.remaining() == 1.0
            clock.advance(0.4)
            assert _timeout.remaining() == pytest.approx(0.6)
            assert _timeout.exceeded().timeout == 1.0
        with riprap.deadline(0.1, clock=clock) as inner:
            assert _timeout.remaining() == pytest.approx(0.1)
            assert _timeout.exceeded().timeout == 0.1
            clock.advance(1.0)
            assert _timeout.remaining() == 0.0
            assert inner.expired
        assert outer.remaining() == 0.0
    assert _timeout.remaining() is None
    assert _deadlines.remaining is _timeout.remaining
    with pytest.raises(RuntimeError, match="entered only once"), outer:
        pass


def test_a_sync_deadline_never_interrupts_or_fails_a_block_that_completed(
    clock: ManualClock,
) -> None:
    with riprap.deadline(1.0, clock=clock):
        clock.advance(2.0)
        result = "done"
    assert result == "done"


def test_nested_async_deadlines_end_at_the_earliest() -> None:
    """An inner deadline(5) inside an outer deadline(0.05) ends at 0.05 (real time)."""

    async def nested() -> None:
        async with riprap.deadline(0.05), riprap.deadline(5):
            await asyncio.sleep(10)

    async def main() -> float:
        start = time.monotonic()
        with pytest.raises(TimeoutExceededError) as info:
            await nested()
        assert info.value.timeout == 0.05
        assert isinstance(info.value.__cause__, asyncio.CancelledError)
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        return time.monotonic() - start

    assert 0.04 <= asyncio.run(main()) < 1.0


def test_nested_async_deadlines_on_a_manual_clock_end_at_the_earliest(
    clock: ManualClock,
) -> None:
    async def nested() -> None:
        async with riprap.deadline(1, clock=clock), riprap.deadline(5, clock=clock):
            await clock.asleep(2)

    async def main() -> None:
        with pytest.raises(TimeoutExceededError) as info:
            await nested()
        assert info.value.timeout == 1
        async with riprap.deadline(1, clock=clock):
            await clock.asleep(0.5)

    asyncio.run(main())


def test_the_async_timeout_decorator_cancels_and_counts() -> None:
    cleanup: list[str] = []

    @riprap.timeout(0.02)
    async def slow(x: int) -> int:
        try:
            await asyncio.sleep(10)
        finally:
            cleanup.append("ran")
        return x

    @riprap.timeout(5)
    async def fast(x: int) -> int:
        await asyncio.sleep(0)
        return x

    async def main() -> None:
        assert await fast(3) == 3
        with pytest.raises(TimeoutExceededError) as info:
            await slow(1)
        assert info.value.timeout == 0.02

    asyncio.run(main())
    assert cleanup == ["ran"]
    assert inspect.iscoroutinefunction(slow)
    assert slow.__name__ == "slow"
    assert slow.timeout.get_stats() == {  # type: ignore[attr-defined]
        "timeout": 0.02,
        "calls": 1,
        "timed_out": 1,
        "abandoned_running": 0,
    }


@pytest.mark.parametrize("bulkhead_outside", [True, False])
def test_reg_T22_sync_work_is_abandoned_and_its_slot_held_until_it_ends(
    bulkhead_outside: bool,
) -> None:
    """A 1 s sync function under a 0.1 s timeout in a limit-1 bulkhead (real time)."""
    bh = riprap.Bulkhead("t22", riprap.BulkheadConfig(max_concurrent_calls=1))
    release = threading.Event()
    ended = threading.Event()

    def work() -> int:
        release.wait(1.0)
        ended.set()
        return 1

    f = (
        bh(riprap.timeout(0.1)(work))
        if bulkhead_outside
        else riprap.timeout(0.1)(bh(work))
    )
    before = _timeout.abandoned_calls()
    start = time.monotonic()
    with pytest.raises(TimeoutExceededError):
        f()
    assert 0.09 <= time.monotonic() - start < 0.9
    assert _timeout.abandoned_calls() == before + 1
    assert bh.get_stats()["active_calls"] == 1, (
        "the abandoned work still holds its slot"
    )
    assert bh.try_acquire() is None, "the slot really is taken"
    if bulkhead_outside:
        assert bh.get_stats()["running_after_timeout"] == 1
    release.set()
    ended.wait(5)
    _wait_until(lambda: bh.get_stats()["active_calls"] == 0)
    assert _timeout.abandoned_calls() == before
    assert bh.get_stats()["running_after_timeout"] == 0


def _wait_until(condition: Any, limit: float = 5.0) -> None:
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end
        time.sleep(0.001)


def test_sync_timeout_passes_results_and_exceptions_and_keeps_the_shape() -> None:
    @riprap.timeout(5)
    def add(a: int, b: int = 1) -> int:
        """Adds."""
        return a + b

    @riprap.timeout(5)
    def boom() -> None:
        raise KeyError("k")

    assert add(1, b=2) == 3
    with pytest.raises(KeyError):
        boom()
    assert add.__doc__ == "Adds."
    assert list(inspect.signature(add).parameters) == ["a", "b"]
    assert add.__wrapped__.__name__ == "add"  # type: ignore[attr-defined]

    class C:
        @riprap.timeout(5)
        def m(self) -> str:
            return "m"

    assert C().m() == "m"
    with pytest.raises(TypeError, match="generator function"):

        @riprap.timeout(1)
        def gen() -> Any:
            yield 1


def test_sync_work_runs_under_the_deadline_so_riprap_waits_inside_respect_it() -> None:
    seen: list[float | None] = []

    @riprap.timeout(5)
    def inside() -> None:
        seen.append(_timeout.remaining())

    inside()
    assert seen[0] is not None
    assert 4.0 < seen[0] <= 5.0


def test_a_sync_timeout_on_a_manual_clock_ends_work_that_overran(
    clock: ManualClock,
) -> None:
    @riprap.timeout(1.0, clock=clock)
    def work(seconds: float) -> str:
        clock.advance(seconds)
        return "done"

    assert work(0.5) == "done"
    with pytest.raises(TimeoutExceededError):
        work(1.5)


def test_an_earlier_outer_deadline_wins_over_a_sync_timeout(clock: ManualClock) -> None:
    @riprap.timeout(10.0, clock=clock)
    def work() -> None:
        clock.advance(3.0)

    with riprap.deadline(2.0, clock=clock), pytest.raises(TimeoutExceededError) as info:
        work()
    assert info.value.timeout == 2.0


@pytest.mark.parametrize("outside_first", [True, False])
def test_reg_K5_an_outside_cancel_racing_the_deadline_stays_a_cancellation(
    outside_first: bool,
) -> None:
    """Both cancel requests land in the same loop tick, 200 times each way."""

    async def one() -> tuple[str, int]:
        scope = riprap.deadline(60)
        started = asyncio.Event()

        async def body() -> None:
            async with scope:
                started.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(body())
        await started.wait()
        if outside_first:
            task.cancel()
            scope._expire()  # the deadline's timer, in the same tick
        else:
            scope._expire()
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled", task.cancelling()
        except TimeoutExceededError:
            return "timeout", task.cancelling()
        return "returned", task.cancelling()

    async def main() -> None:
        for _ in range(200):
            outcome, cancelling = await one()
            assert outcome == "cancelled"
            assert cancelling == 1, "only the outside request is left"

    asyncio.run(main())


def test_reg_K5_our_timeout_alone_leaves_the_cancelling_count_balanced() -> None:
    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        for _ in range(100):
            with pytest.raises(TimeoutExceededError):
                async with riprap.deadline(0):
                    await asyncio.sleep(1)
            assert task.cancelling() == 0
        # An outside request made before the block is not ours to take back.
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with riprap.deadline(5):
                await asyncio.sleep(1)
        assert task.uncancel() == 0

    asyncio.run(main())
