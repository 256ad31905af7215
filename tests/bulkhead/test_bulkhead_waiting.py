"""Waiting for a bulkhead slot: `max_wait` on the bulkhead's clock, the caller's deadline
(deadline-aware queueing, and a sync wait that never outlasts it), a prompt handover to a parked
thread, and Ctrl-C during a sync wait. Runs on the active backend.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from bulkhead_helpers import bulkhead, wait_until

import riprap
from riprap import (
    Bulkhead,
    BulkheadRejectedError,
    TimeoutExceededError,
)
from riprap.testing import ManualClock


def test_max_wait_rejects_a_sync_waiter_on_the_bulkheads_clock(
    clock: ManualClock,
) -> None:
    bh = bulkhead(1, clock=clock, max_wait=2.0)
    held = bh.acquire()
    outcome: list[object] = []
    queued = threading.Event()

    def wait() -> None:
        queued.set()
        try:
            outcome.append(bh.acquire())
        except BulkheadRejectedError as e:
            outcome.append(e)

    t = threading.Thread(target=wait)
    t.start()
    queued.wait()
    wait_until(lambda: bh.get_stats()["queued_calls"] == 1)
    clock.advance(1.999)
    t.join(0.05)
    assert t.is_alive(), "1.999 s on the bulkhead's clock is not max_wait"
    clock.advance(0.001)
    t.join(5)
    assert not t.is_alive()
    assert isinstance(outcome[0], BulkheadRejectedError)
    assert "max_wait (2.000s)" in str(outcome[0])
    s = bh.get_stats()
    assert (s["rejected_max_wait"], s["queued_calls"], s["active_calls"]) == (1, 0, 1)
    bh.release(held)


def test_max_wait_rejects_an_async_waiter_on_the_bulkheads_clock(
    clock: ManualClock,
) -> None:
    bh = bulkhead(1, clock=clock, max_wait=0.5)

    async def main() -> None:
        held = await bh._acquire_async()
        waiter = asyncio.create_task(bh._acquire_async())
        await asyncio.sleep(0)
        assert bh.get_stats()["queued_calls"] == 1
        clock.advance(0.5)
        with pytest.raises(BulkheadRejectedError, match="max_wait"):
            await waiter
        bh.release(held)

    asyncio.run(main())
    s = bh.get_stats()
    assert (s["active_calls"], s["queued_calls"], s["rejected_max_wait"]) == (0, 0, 1)


def test_max_wait_zero_never_waits(clock: ManualClock) -> None:
    bh = bulkhead(1, clock=clock, max_wait=0.0)
    held = bh.acquire()
    with pytest.raises(BulkheadRejectedError, match="max_wait"):
        bh.acquire()
    bh.release(held)
    assert bh.get_stats()["queued_calls"] == 0


# --- deadlines and deadline-aware queueing -----------------------------------------------------


def _learn_duration(bh: Bulkhead, clock: ManualClock, seconds: float) -> None:
    """Teach the bulkhead that a call holds its slot `seconds` (calls that fill it are timed)."""
    permits = [bh.acquire() for _ in range(bh.current_limit)]
    clock.advance(seconds)
    for p in permits:
        bh.release(p)


def test_a_caller_whose_deadline_comes_before_its_turn_is_rejected_at_once(
    clock: ManualClock,
) -> None:
    bh = bulkhead(2, clock=clock)
    _learn_duration(bh, clock, 1.0)
    assert bh.get_stats()["average_duration"] == 1.0
    held = [bh.acquire(), bh.acquire()]
    # Position 1 of 2 slots: expected 0.5 s.
    with (
        riprap.deadline(0.4, clock=clock),
        pytest.raises(BulkheadRejectedError) as info,
    ):
        bh.acquire()
    assert "deadline is 0.400s away but the expected wait is 0.500s" in str(info.value)

    async def main() -> None:
        async with riprap.deadline(0.4, clock=clock):
            with pytest.raises(BulkheadRejectedError, match="expected wait"):
                await bh._acquire_async()
        async with riprap.deadline(0.6, clock=clock):
            waiter = asyncio.create_task(bh._acquire_async())
            await asyncio.sleep(0)
            assert bh.get_stats()["queued_calls"] == 1
            bh.release(held.pop())
            bh.release(await waiter)

    asyncio.run(main())
    s = bh.get_stats()
    assert (s["rejected_deadline"], s["queued_calls"]) == (2, 0)
    bh.release(held.pop())


def test_a_sync_wait_never_outlasts_the_callers_deadline() -> None:
    bh = bulkhead(1)
    held = bh.acquire()
    start = time.monotonic()
    with riprap.deadline(0.05), pytest.raises(TimeoutExceededError) as info:
        bh.acquire()
    waited = time.monotonic() - start
    assert 0.04 <= waited < 1.0
    assert info.value.timeout == 0.05
    s = bh.get_stats()
    assert (s["queued_calls"], s["cancelled_waits"]) == (0, 1)
    bh.release(held)
    # A deadline that has already passed is refused before queueing.
    held = bh.acquire()
    with (
        riprap.deadline(0.0),
        pytest.raises(BulkheadRejectedError, match="deadline has passed"),
    ):
        bh.acquire()
    bh.release(held)


# --- sync waiting: prompt handover, Ctrl-C ------------------------------------------------------


def test_a_sync_waiter_gets_the_freed_slot_at_once_not_after_a_polling_slice() -> None:
    """Real time: the release unparks the waiter it hands the slot to (20 handovers)."""
    bh = bulkhead(1)
    lags = []
    for _ in range(20):
        held = bh.acquire()
        got = threading.Event()
        times: list[float] = []

        def wait(got: threading.Event = got, times: list[float] = times) -> None:
            permit = bh.acquire()
            times.append(time.monotonic())
            got.set()
            bh.release(permit)

        t = threading.Thread(target=wait)
        t.start()
        wait_until(lambda: bh.get_stats()["queued_calls"] == 1)
        released = time.monotonic()
        bh.release(held)
        assert got.wait(5)
        t.join(5)
        lags.append(times[0] - released)
    lags.sort()
    assert lags[len(lags) // 2] < 0.02, (
        lags
    )  # a polling waiter would lag ~25 ms on average
    assert bh.get_stats()["waited_calls"] == 20


def test_ctrl_c_interrupts_a_sync_wait_and_gives_the_place_back() -> None:
    """Real time: KeyboardInterrupt reaches a waiting main thread within a slice (<= 50 ms)."""
    import _thread

    bh = bulkhead(1)
    held = bh.acquire()
    timer = threading.Timer(0.05, _thread.interrupt_main)
    start = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        bh.acquire()
    assert time.monotonic() - start < 0.5
    timer.join()
    s = bh.get_stats()
    assert (s["queued_calls"], s["cancelled_waits"], s["active_calls"]) == (0, 1, 1)
    bh.release(held)
