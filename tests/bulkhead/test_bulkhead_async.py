"""Async bulkhead waiters under cancellation (aio-libs/aiohttp#2937, google/duet#68,
joshrotenberg/tower-resilience#365, python/cpython#86296, agronholm/anyio#947).

A slot is handed to the first live waiter directly; a waiter cancelled while queued leaves the
queue, and one cancelled after its grant (in the same loop tick, before it ran) passes the slot
on. Nothing may leak or be granted twice, whatever the interleaving. Runs on both backends.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import pytest

from riprap import Bulkhead, BulkheadConfig, BulkheadTimeoutError


def bulkhead(n: int = 1, queue: int = 1000, **fields: Any) -> Bulkhead:
    return Bulkhead(
        "async", BulkheadConfig(max_concurrent_calls=n, max_queue_size=queue, **fields)
    )


def no_loop_errors(
    loop: asyncio.AbstractEventLoop, errors: list[dict[str, Any]]
) -> None:
    loop.set_exception_handler(lambda _loop, context: errors.append(context))


def t17_round(rng: random.Random) -> None:
    """Limit 1 held, 100 waiters; release and cancel half of them (waiter 0 among them, so
    it is granted in the very tick it is cancelled)."""
    bh = bulkhead(1)
    errors: list[dict[str, Any]] = []
    ran: list[int] = []

    @bh
    async def job(i: int) -> None:
        ran.append(i)
        await asyncio.sleep(0)

    async def main() -> set[int]:
        no_loop_errors(asyncio.get_running_loop(), errors)
        holder = await bh._acquire_async()
        tasks = [asyncio.create_task(job(i)) for i in range(100)]
        await asyncio.sleep(0)  # all 100 queue behind the holder
        assert bh.get_stats()["queued_calls"] == 100
        doomed = {0, *rng.sample(range(1, 100), 49)}
        bh.release(holder)  # hands the slot to waiter 0, which never gets to run
        for i in sorted(doomed):
            tasks[i].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return doomed

    doomed = asyncio.run(main())
    survivors = [i for i in range(100) if i not in doomed]
    assert ran == survivors, "every surviving waiter runs, first come first served"
    s = bh.get_stats()
    assert (s["active_calls"], s["queued_calls"]) == (0, 0)
    assert s["admitted_calls"] == 51
    assert s["cancelled_waits"] == 50
    assert errors == []


def test_reg_T17_half_of_100_waiters_cancelled_at_random_the_rest_run_in_order() -> (
    None
):
    rng = random.Random(17)
    for _ in range(20):
        t17_round(rng)


def test_reg_L1_a_grant_cancelled_in_the_same_tick_goes_to_the_next_waiter_every_time() -> (
    None
):
    bh = bulkhead(1)

    async def main() -> None:
        for _ in range(2000):
            holder = await bh._acquire_async()
            first = asyncio.create_task(bh._acquire_async())
            second = asyncio.create_task(bh._acquire_async())
            await asyncio.sleep(0)
            bh.release(holder)  # the slot is handed to `first`...
            first.cancel()  # ...which is cancelled before it ever runs
            got = await second
            assert bh.get_stats()["active_calls"] == 1
            bh.release(got)
            with pytest.raises(asyncio.CancelledError):
                await first

    asyncio.run(main())
    s = bh.get_stats()
    assert (s["active_calls"], s["queued_calls"], s["cancelled_waits"]) == (0, 0, 2000)


def test_reg_L3_a_cancelled_woken_waiter_does_not_strand_the_others() -> None:
    bh = bulkhead(2)

    async def main() -> None:
        a, b = await bh._acquire_async(), await bh._acquire_async()
        waiters = [asyncio.create_task(bh._acquire_async()) for _ in range(4)]
        await asyncio.sleep(0)
        bh.release(a)
        bh.release(b)
        waiters[0].cancel()
        waiters[1].cancel()
        got = await asyncio.wait_for(asyncio.gather(waiters[2], waiters[3]), 2)
        for p in got:
            bh.release(p)

    asyncio.run(main())
    assert bh.get_stats()["active_calls"] == 0


def test_random_cancellation_storm_never_leaks_or_double_grants() -> None:
    rng = random.Random(2026)
    bh = bulkhead(3, queue=40)
    peak = 0
    inside = 0

    @bh
    async def job() -> None:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        try:
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
        finally:
            inside -= 1

    async def main() -> None:
        errors: list[dict[str, Any]] = []
        no_loop_errors(asyncio.get_running_loop(), errors)
        for _ in range(300):
            tasks = [asyncio.create_task(job()) for _ in range(rng.randrange(1, 40))]
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0)
            for t in rng.sample(tasks, rng.randrange(len(tasks) + 1)):
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            s = bh.get_stats()
            assert (s["active_calls"], s["queued_calls"]) == (0, 0)
        assert errors == []

    asyncio.run(main())
    assert 1 <= peak <= 3


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_reg_T20_control_flow_exceptions_pass_and_slots_come_back(
    exc: type[BaseException],
) -> None:
    bh = bulkhead(1, isolation_level="adaptive")

    @bh
    async def boom() -> None:
        await asyncio.sleep(0)
        raise exc()

    async def main() -> None:
        with pytest.raises(exc):
            await boom()

    asyncio.run(main())
    s = bh.get_stats()
    assert (s["active_calls"], s["current_limit"]) == (0, 1)


def test_reg_K3_a_cancelled_running_call_releases_exactly_once() -> None:
    bh = bulkhead(2)
    started = asyncio.Event

    async def main() -> None:
        go = started()

        @bh
        async def hang() -> None:
            go.set()
            await asyncio.sleep(60)

        task = asyncio.create_task(hang())
        await go.wait()
        assert bh.get_stats()["active_calls"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert bh.get_stats()["active_calls"] == 0
        # Dropping a coroutine that never finished (GeneratorExit) releases too.
        coro = hang()
        coro.send(None)
        assert bh.get_stats()["active_calls"] == 1
        coro.close()
        assert bh.get_stats()["active_calls"] == 0

    asyncio.run(main())


@pytest.mark.parametrize("outside_first", [True, False])
def test_reg_K5_an_outside_cancel_racing_the_bulkhead_timeout_stays_a_cancellation(
    outside_first: bool,
) -> None:
    bh = bulkhead(4, timeout=60)

    @bh
    async def hang(go: asyncio.Event) -> None:
        go.set()
        await asyncio.sleep(600)

    async def one() -> tuple[str, int]:
        go = asyncio.Event()
        task = asyncio.create_task(hang(go))
        await go.wait()
        calls = bh._inflight.calls(asyncio.get_running_loop())
        (permit,) = calls.entries
        if outside_first:
            task.cancel()
        calls.fired.add(permit)  # what the watchdog does when the timeout comes...
        task.cancel()  # ...in the same tick
        if not outside_first:
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled", task.cancelling()
        except BulkheadTimeoutError:
            return "timeout", task.cancelling()
        return "returned", task.cancelling()

    async def main() -> None:
        for _ in range(200):
            assert await one() == ("cancelled", 1)
        # The watchdog's request alone is a timeout, and leaves the count balanced.
        go = asyncio.Event()
        task = asyncio.create_task(hang(go))
        await go.wait()
        calls = bh._inflight.calls(asyncio.get_running_loop())
        (permit,) = calls.entries
        calls.fired.add(permit)
        task.cancel()
        with pytest.raises(BulkheadTimeoutError):
            await task
        assert task.cancelling() == 0

    asyncio.run(main())
    s = bh.get_stats()
    assert (s["active_calls"], s["timed_out_calls"]) == (0, 1)


def test_the_watchdog_times_out_only_calls_past_their_deadline() -> None:
    bh = bulkhead(10, timeout=0.05)

    @bh
    async def sleeper(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    async def main() -> list[Any]:
        return await asyncio.gather(
            sleeper(0.0),
            sleeper(0.01),
            sleeper(0.3),
            sleeper(0.3),
            return_exceptions=True,
        )

    results = asyncio.run(main())
    assert results[:2] == [0.0, 0.01]
    assert all(isinstance(r, BulkheadTimeoutError) for r in results[2:])
    s = bh.get_stats()
    assert (s["active_calls"], s["timed_out_calls"]) == (0, 2)


def test_execute_of_sync_work_releases_even_after_its_loop_closed() -> None:
    bh = bulkhead(1, timeout=0.02)
    gate = threading.Event()

    async def main() -> None:
        with pytest.raises(BulkheadTimeoutError):
            await bh.execute(gate.wait, 5)

    asyncio.run(main())  # the loop is closed before the worker ends
    s = bh.get_stats()
    assert (s["active_calls"], s["running_after_timeout"]) == (1, 1)
    gate.set()
    end = time.monotonic() + 5
    while bh.get_stats()["active_calls"]:
        assert time.monotonic() < end
        time.sleep(0.001)
    assert bh.get_stats()["running_after_timeout"] == 0
