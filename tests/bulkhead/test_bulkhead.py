"""The bulkhead: configuration, admission, the queue, stats, the decorator, `with`, `execute`,
re-entry and one object across event loops. Runs on the active backend.

Waiting (max_wait, deadlines, handover, Ctrl-C), the manager, async cancellation, timeouts,
the adaptive limit and threads have their own files.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from typing import Any

import pytest
from bulkhead_helpers import bulkhead

import riprap
from riprap import (
    Bulkhead,
    BulkheadConfig,
    BulkheadRejectedError,
    BulkheadTimeoutError,
)
from riprap.testing import ManualClock

# --- configuration -----------------------------------------------------------------------------


def test_defaults_are_the_seeds() -> None:
    c = BulkheadConfig()
    assert (c.max_concurrent_calls, c.max_queue_size, c.timeout) == (10, 100, 30.0)
    assert (c.isolation_level, c.max_wait, c.slow_call_duration) == (
        "strict",
        None,
        None,
    )
    assert riprap.ResourceBulkhead is Bulkhead
    bh = Bulkhead("db")
    assert bh.config == c
    assert bh.name == "db"


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        (
            {"max_concurrent_calls": 0},
            ValueError,
            "max_concurrent_calls must be >= 1, got 0",
        ),
        (
            {"max_concurrent_calls": True},
            TypeError,
            "max_concurrent_calls must be an int, got bool",
        ),
        (
            {"max_concurrent_calls": 2.0},
            TypeError,
            "max_concurrent_calls must be an int, got float",
        ),
        (
            {"max_concurrent_calls": 10**9 + 1},
            ValueError,
            "max_concurrent_calls must be <= 1000000000, got 1000000001",
        ),
        ({"max_queue_size": -1}, ValueError, "max_queue_size must be >= 0, got -1"),
        ({"max_queue_size": 2**70}, ValueError, "max_queue_size must be <= 1000000000"),
        ({"timeout": 0}, ValueError, "timeout must be > 0.0, got 0.0"),
        (
            {"timeout": float("nan")},
            ValueError,
            "timeout must be a finite number, got nan",
        ),
        (
            {"timeout": float("inf")},
            ValueError,
            "timeout must be a finite number, got inf",
        ),
        ({"timeout": "1"}, TypeError, "timeout must be a number, got str"),
        (
            {"isolation_level": "loose"},
            ValueError,
            "isolation_level must be one of 'strict', 'shared', 'adaptive', got 'loose'",
        ),
        ({"isolation_level": 1}, TypeError, "isolation_level must be a str, got int"),
        ({"max_wait": -0.5}, ValueError, "max_wait must be >= 0.0, got -0.5"),
        (
            {"max_wait": float("inf")},
            ValueError,
            "max_wait must be a finite number, got inf",
        ),
        (
            {"slow_call_duration": 0.0},
            ValueError,
            "slow_call_duration must be > 0.0, got 0.0",
        ),
    ],
)
def test_invalid_config_names_the_field_and_value(
    fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        BulkheadConfig(**fields)
    assert str(info.value).startswith(message)


def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="name must be a str, got int"):
        Bulkhead(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config must be a BulkheadConfig, got dict"):
        Bulkhead("x", {"max_concurrent_calls": 3})  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"clock must be a riprap\.testing\.ManualClock"
    ):
        Bulkhead("x", clock=object())
    assert list(inspect.signature(Bulkhead).parameters) == ["name", "config", "clock"]


# --- admission, the queue, stats ---------------------------------------------------------------


def test_strict_admits_the_limit_queues_then_rejects_and_counts_everything() -> None:
    bh = bulkhead(2, queue=1)
    a, b = bh.try_acquire(), bh.try_acquire()
    assert a is not None
    assert b is not None
    assert bh.try_acquire() is None
    ticket = bh._acquire(False, None)
    assert isinstance(ticket, int)
    with pytest.raises(BulkheadRejectedError) as info:
        bh._acquire(False, None)
    assert info.value.name == "svc"
    assert "every slot is busy and the queue is full" in str(info.value)
    s = bh.get_stats()
    assert (s["active_calls"], s["queued_calls"], s["rejected_calls"]) == (2, 1, 1)
    assert s["total_calls"] == 4
    assert s["rejection_rate"] == 0.25
    assert s["utilization"] == 1.0
    assert s["config"] == {
        "max_concurrent": 2,
        "max_queue_size": 1,
        "timeout": 30.0,
        "isolation_level": "strict",
        "max_wait": None,
        "slow_call_duration": None,
    }
    assert s["current_limit"] == 2
    assert s["rejected_queue_full"] == 1
    # The freed slot is handed to the waiter, not left for a newcomer.
    bh.release(a)
    assert bh.try_acquire() is None
    granted = bh._claim(ticket)
    assert granted is not None
    bh.release(b)
    bh.release(granted)
    bh.release(granted)  # a second return is a no-op
    s = bh.get_stats()
    assert (
        s["active_calls"],
        s["queued_calls"],
        s["admitted_calls"],
        s["waited_calls"],
    ) == (
        0,
        0,
        3,
        1,
    )


def test_shared_admits_twenty_percent_more_rounded_down() -> None:
    bh = bulkhead(5, queue=0, isolation_level="shared")
    permits = [bh.try_acquire() for _ in range(6)]
    assert all(p is not None for p in permits)
    with pytest.raises(BulkheadRejectedError):
        bh.acquire()
    s = bh.get_stats()
    assert s["current_limit"] == 6
    assert s["utilization"] == 1.2
    assert (
        BulkheadConfig(max_concurrent_calls=9, isolation_level="shared")._core.capacity
        == 10
    )


def test_every_rejection_is_a_fresh_exception() -> None:
    bh = bulkhead(1, queue=0)
    held = bh.acquire()
    errors = []
    for _ in range(3):
        with pytest.raises(BulkheadRejectedError) as info:
            bh.acquire()
        errors.append(info.value)
    assert len({id(e) for e in errors}) == 3
    assert all(e.__traceback__ is not None for e in errors)
    bh.release(held)


def test_a_permit_of_another_bulkhead_is_refused() -> None:
    a, b = bulkhead(1), bulkhead(1)
    p = a.acquire()
    with pytest.raises(ValueError, match="another bulkhead"):
        b.release(p)
    assert a.get_stats()["active_calls"] == 1
    a.release(p)


# --- the decorator, with, execute --------------------------------------------------------------


def test_the_decorator_keeps_the_functions_shape() -> None:
    bh = bulkhead()

    @bh
    def add(a: int, b: int = 1) -> int:
        """Adds."""
        return a + b

    @bh
    async def aadd(a: int, b: int = 1) -> int:
        return a + b

    assert add(2, b=3) == 5
    assert asyncio.run(aadd(2)) == 3
    for f, g in ((add, add.__wrapped__), (aadd, aadd.__wrapped__)):
        assert f.__name__ == g.__name__
        assert inspect.signature(f) == inspect.signature(g)
        assert f.bulkhead is bh  # type: ignore[attr-defined]
    assert add.__doc__ == "Adds."
    assert not inspect.iscoroutinefunction(add)
    assert inspect.iscoroutinefunction(aadd)


def test_methods_static_and_class_methods_and_partials() -> None:
    bh = bulkhead()

    class Client:
        def __init__(self) -> None:
            self.n = 10

        @bh
        def get(self, x: int) -> int:
            return self.n + x

        @bh
        async def aget(self, x: int) -> int:
            return self.n + x

        @bh
        @staticmethod
        def static(x: int) -> int:
            return x

        @bh
        @classmethod
        def klass(cls, x: int) -> str:
            return f"{cls.__name__}{x}"

    c = Client()
    assert c.get(1) == 11
    assert asyncio.run(c.aget(2)) == 12
    assert Client.static(3) == 3
    assert c.klass(4) == "Client4"
    assert bh(functools.partial(max, 3))(5) == 5
    assert bh.get_stats()["active_calls"] == 0


def test_generator_functions_are_refused() -> None:
    bh = bulkhead()

    def gen() -> Any:
        yield 1

    async def agen() -> Any:
        yield 1

    for f in (gen, agen):
        with pytest.raises(TypeError, match="generator function"):
            bh(f)


@pytest.mark.parametrize(
    "exc", [ValueError("v"), KeyboardInterrupt(), SystemExit(3), GeneratorExit()]
)
def test_exceptions_pass_through_untouched_and_the_slot_comes_back(
    exc: BaseException,
) -> None:
    bh = bulkhead(1)

    @bh
    def boom() -> None:
        raise exc

    @bh
    async def aboom() -> None:
        raise exc

    for _ in range(2):
        with pytest.raises(type(exc)) as info:
            boom()
        assert info.value is exc
        with pytest.raises(type(exc)) as info:
            with bh:
                raise exc
        assert info.value is exc
        with pytest.raises(type(exc)) as info:
            asyncio.run(aboom())
        assert info.value is exc
    s = bh.get_stats()
    assert (s["active_calls"], s["rejected_calls"], s["admitted_calls"]) == (0, 0, 6)


def test_with_and_async_with_hold_a_slot_for_the_block() -> None:
    bh = bulkhead(2)
    with bh as entered:
        assert entered is bh
        assert bh.get_stats()["active_calls"] == 1
        with bh:
            assert bh.get_stats()["active_calls"] == 2
    assert bh.get_stats()["active_calls"] == 0

    async def main() -> None:
        async with bh as entered:
            assert entered is bh
            assert bh.get_stats()["active_calls"] == 1
        assert bh.get_stats()["active_calls"] == 0

    asyncio.run(main())
    with pytest.raises(RuntimeError, match="exit without a matching enter"):
        bh.__exit__(None, None, None)


def test_execute_runs_sync_and_async_functions_and_returns_their_results() -> None:
    bh = bulkhead(1)
    seen: list[str] = []

    def sync_f(x: int, *, y: int) -> int:
        seen.append(threading.current_thread().name)
        return x + y

    async def async_f(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    async def main() -> None:
        assert await bh.execute(sync_f, 1, y=2) == 3
        assert await bh.execute(async_f, 4) == 8
        with pytest.raises(ZeroDivisionError):
            await bh.execute(lambda: 1 / 0)
        # A sync callable that returns an awaitable: awaited in the slot.
        assert await bh.execute(lambda: async_f(5)) == 10

    asyncio.run(main())
    assert seen[0].startswith("riprap-worker"), "sync work runs in a worker thread"
    s = bh.get_stats()
    assert (s["active_calls"], s["admitted_calls"]) == (0, 4)


def test_an_async_call_longer_than_timeout_is_cancelled_with_bulkhead_timeout_error() -> (
    None
):
    bh = bulkhead(1, timeout=0.02)
    cleaned: list[bool] = []

    @bh
    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append(bh.get_stats()["active_calls"] == 1)

    async def main() -> None:
        with pytest.raises(BulkheadTimeoutError) as info:
            await slow()
        assert (info.value.name, info.value.timeout) == ("svc", 0.02)
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value.__cause__, asyncio.CancelledError)
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]

    asyncio.run(main())
    # The call's own cleanup ran while it still held its slot (python/cpython#7216 returned
    # before the cancelled inner task had cleaned up).
    assert cleaned == [True]
    s = bh.get_stats()
    assert (s["active_calls"], s["timed_out_calls"]) == (0, 1)


def test_async_timeouts_on_a_manual_clock_end_calls_that_overran(
    clock: ManualClock,
) -> None:
    bh = bulkhead(1, clock=clock, timeout=5.0)

    @bh
    async def work(seconds: float) -> str:
        await clock.asleep(seconds)
        return "done"

    async def main() -> None:
        assert await work(4.9) == "done"
        with pytest.raises(BulkheadTimeoutError):
            await work(5.0)
        async with bh:
            clock.advance(1.0)
        with pytest.raises(BulkheadTimeoutError):
            async with bh:
                clock.advance(6.0)

    asyncio.run(main())
    assert bh.get_stats()["timed_out_calls"] == 2


# --- re-entry ---------------------------------------------------------------------------


def test_reg_F26_sync_reentry_into_a_full_bulkhead_is_rejected_instead_of_deadlocking() -> (
    None
):
    bh = bulkhead(1, queue=10)

    @bh
    def outer(depth: int) -> int:
        return 0 if depth == 0 else outer(depth - 1) + 1

    start = time.monotonic()
    with pytest.raises(BulkheadRejectedError, match="already holds a slot"):
        outer(1)
    assert time.monotonic() - start < 0.5
    with bh, pytest.raises(BulkheadRejectedError, match="already holds a slot"), bh:
        pass
    s = bh.get_stats()
    assert (s["active_calls"], s["queued_calls"], s["rejected_reentrant"]) == (0, 0, 2)


def test_reg_T44_recursion_50_deep_works_when_the_limit_allows_it() -> None:
    bh = bulkhead(50)

    @bh
    def down(depth: int) -> int:
        assert bh.get_stats()["active_calls"] == 51 - depth
        return 0 if depth == 1 else down(depth - 1) + 1

    assert down(50) == 49
    assert bh.get_stats()["active_calls"] == 0


def test_reg_F26_async_reentry_is_rejected_before_and_after_the_call_suspends() -> None:
    bh = bulkhead(1)

    @bh
    async def outer(suspend_first: bool) -> None:
        if suspend_first:
            await asyncio.sleep(0)
        await inner()

    @bh
    async def inner() -> None:
        pass

    async def main() -> None:
        for suspend in (False, True):
            with pytest.raises(BulkheadRejectedError, match="already holds a slot"):
                await asyncio.wait_for(outer(suspend), 1.0)
        async with bh:
            with pytest.raises(BulkheadRejectedError, match="already holds a slot"):
                await inner()
            # A task created while the slot is held inherits the hold (the holder awaits it).
            with pytest.raises(BulkheadRejectedError, match="already holds a slot"):
                await asyncio.wait_for(inner(), 1.0)

    asyncio.run(main())
    assert bh.get_stats()["active_calls"] == 0


def test_another_task_waits_instead_of_being_taken_for_a_reentrant_caller() -> None:
    bh = bulkhead(1)
    order: list[str] = []

    @bh
    async def job(name: str) -> None:
        order.append(f"{name} in")
        await asyncio.sleep(0.001)
        order.append(f"{name} out")

    async def main() -> None:
        await asyncio.gather(job("a"), job("b"))

    asyncio.run(main())
    assert order == ["a in", "a out", "b in", "b out"]


# --- one object, many event loops --------------------------------------------------------------


def test_reg_L4_one_bulkhead_across_consecutive_event_loops_and_threads() -> None:
    bh = bulkhead(2, queue=100, timeout=5.0)

    @bh
    async def work(i: int) -> int:
        await asyncio.sleep(0)
        return i

    async def many() -> list[int]:
        return await asyncio.gather(*(work(i) for i in range(20)))

    for _ in range(3):
        assert asyncio.run(many()) == list(range(20))
    results: list[list[int]] = []
    threads = [
        threading.Thread(target=lambda: results.append(asyncio.run(many())))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [list(range(20))] * 3
    s = bh.get_stats()
    assert (s["active_calls"], s["queued_calls"], s["admitted_calls"]) == (0, 0, 120)
