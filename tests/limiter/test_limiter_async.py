"""Async waiting: FIFO order, cancellation safety, no loop captured, no loop blocked.

The deterministic tests run in virtual time on `StepClock` (its `asleep` parks the caller until
the test moves time), so a waiter can be cancelled while it waits, or in the very tick its slot
comes. A few short real-clock tests cover the wake-up path on the event loop itself.
Tests named `test_reg_<id>` reproduce a bug a peer limiter shipped and cite its issue.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from helpers import halfway, run_threads
from limiter_helpers import NS, StepClock, settle

from riprap import KeyedRateLimiter, RateLimiter, RateLimitExceeded

RATE = 10  # tokens per second: one slot every 100 ms
SLOT = NS // RATE


class Recording(RateLimiter):
    """Remembers which task holds which ticket, so the test can find a waiter's slot."""

    tickets: dict[asyncio.Task[Any] | None, int]

    def _reserve(self, n: int | None, timeout: float | None) -> int:
        ticket = super()._reserve(n, timeout)
        self.__dict__.setdefault("tickets", {})[asyncio.current_task()] = ticket
        return ticket


def run_waiters(
    count: int, cancels: int = 0, at_grant: int | None = None, seed: int = 0
) -> tuple[list[tuple[int, int]], set[int], float, int, list[dict[str, Any]]]:
    """`count` waiters queue (in index order) on a drained limiter. At `cancels` random moments
    a random waiter that is still queued is cancelled; waiter `at_grant` is cancelled in the
    very tick its slot comes. Returns the grants as (index, ns) in grant order, the cancelled
    waiters, the retry_after a new request gets at the end, the end time, and what the loop's
    exception handler saw."""
    rng = random.Random(seed)

    async def main() -> tuple[
        list[tuple[int, int]], set[int], float, int, list[dict[str, Any]]
    ]:
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        clock = StepClock()
        lim = Recording(RATE, 1, clock=clock)
        assert lim.try_acquire()
        grants: list[tuple[int, int]] = []

        async def waiter(i: int) -> None:
            await lim.acquire_async()
            grants.append((i, clock.now_ns()))

        tasks = []
        for i in range(count):
            tasks.append(asyncio.create_task(waiter(i)))
            await settle(3)  # arrival order is index order
        # Random moments over the first half of the schedule.
        plan = sorted(rng.randrange(0, count * SLOT // 2) for _ in range(cancels))
        cancelled: set[int] = set()
        while True:
            await settle()
            if all(t.done() for t in tasks):
                break
            wake = clock.next_wake()
            if plan and (wake is None or plan[0] <= wake):
                clock.move_to(plan.pop(0))
                queued = [
                    i
                    for i, t in enumerate(tasks)
                    if not t.done() and i not in cancelled and i != at_grant
                ]
                victim = rng.choice(queued)
                tasks[victim].cancel()
                cancelled.add(victim)
                continue
            assert wake is not None, "waiters left but nobody sleeping"
            clock.move_to(wake)
            clock.wake_due()
            if (
                at_grant is not None
                and at_grant not in cancelled
                and lim._remaining(lim.tickets[tasks[at_grant]]) == 0.0
            ):
                tasks[
                    at_grant
                ].cancel()  # the tick its slot came: granted, then cancelled
                cancelled.add(at_grant)
        for t in tasks:
            if not t.cancelled():
                t.result()
        end = clock.now_ns()
        try:
            lim.acquire(timeout=0)
        except RateLimitExceeded as e:
            probe = e.retry_after
        else:
            probe = 0.0
        return grants, cancelled, probe, end, errors

    return asyncio.run(main())


@pytest.mark.parametrize("seed", range(5))
def test_100_waiters_fifo_and_50_cancelled_never_lose_or_double_grant(
    seed: int,
) -> None:
    # agronholm/anyio#947: 100 waiters in arrival order; 50 cancelled at random moments,
    # one of them in the very tick its slot comes. Survivors are served in order, each once,
    # at exactly the times a run without the cancelled waiters gives them.
    at_grant = random.Random(seed).randrange(10, 60)
    grants, cancelled, probe, end, errors = run_waiters(100, 49, at_grant, seed)
    assert len(cancelled) == 50
    assert at_grant in cancelled
    survivors = [i for i in range(100) if i not in cancelled]
    assert [i for i, _ in grants] == survivors  # FIFO, each survivor exactly once
    control, _, control_probe, control_end, _ = run_waiters(50)
    assert [t for _, t in grants] == [t for _, t in control]  # no token lost
    assert (probe, end) == (control_probe, control_end)  # the same final state
    assert [t for _, t in control] == [(k + 1) * SLOT for k in range(50)]
    assert errors == []


def test_reg_L1_cancel_in_the_tick_of_the_grant_gives_the_token_back_10k_times() -> (
    None
):
    # anyio#947: a waiter cancelled in the same tick it was granted kept the token.
    async def main() -> int:
        moved_up = 0
        for _ in range(10_000):
            clock = StepClock()
            lim = Recording(RATE, 1, clock=clock)
            assert lim.try_acquire()
            granted: list[str] = []

            async def waiter(
                name: str, lim: Recording = lim, granted: list[str] = granted
            ) -> None:
                await lim.acquire_async()
                granted.append(name)

            first = asyncio.create_task(waiter("first"))
            await settle(3)
            second = asyncio.create_task(waiter("second"))
            await settle(3)
            clock.move_to(SLOT)
            clock.wake_due()
            first.cancel()  # its slot came this tick; it never got to run
            await settle()
            clock.move_to(clock.next_wake() or clock.now_ns())
            clock.wake_due()
            await settle()
            await asyncio.gather(first, second, return_exceptions=True)
            assert granted == ["second"]
            assert first.cancelled()
            moved_up += clock.now_ns() == SLOT  # the second took the first's slot
            assert lim.get_stats()["waited"] == 1
        return moved_up

    assert asyncio.run(main()) == 10_000


def test_reg_L18_every_parked_waiter_finishes_once_capacity_returns() -> None:
    # tower#454: only the last waiter's waker was stored.
    grants, _, _, end, errors = run_waiters(40)
    assert [i for i, _ in grants] == list(range(40))
    assert end == 40 * SLOT
    assert errors == []


def test_keyed_waiters_are_fifo_per_key_and_give_back() -> None:
    async def main() -> list[tuple[str, int]]:
        clock = StepClock()
        lim = KeyedRateLimiter(RATE, 1, clock=clock)
        order: list[tuple[str, int]] = []

        async def waiter(key: str, i: int) -> None:
            await lim.acquire_async(key)
            order.append((key, i))

        tasks = [
            asyncio.create_task(waiter(k, i)) for i in range(3) for k in ("a", "b")
        ]
        await settle()
        tasks[2].cancel()  # ("a", 1): cancelled while queued
        while not all(t.done() for t in tasks):
            await settle()
            wake = clock.next_wake()
            if wake is None:
                break
            clock.move_to(wake)
            clock.wake_due()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert clock.now_ns() == 2 * SLOT  # "a" needed one slot less
        return order

    order = asyncio.run(main())
    assert [x for x in order if x[0] == "a"] == [("a", 0), ("a", 2)]
    assert [x for x in order if x[0] == "b"] == [("b", 0), ("b", 1), ("b", 2)]


class GapRateLimiter(RateLimiter):
    """Runs `gap()` once, on the thread `gap_thread`, right after a waiter read its remaining
    wait: the moment between reading it and whatever the waiter does next."""

    def _remaining(self, ticket: int) -> float:
        left = super()._remaining(ticket)
        if self.__dict__.get("gap_thread") == threading.get_ident():
            self.__dict__.pop("gap_thread")
            self.__dict__.pop("gap")()
        return left


class GapKeyedRateLimiter(KeyedRateLimiter):
    """`GapRateLimiter` for the keyed limiter."""

    def _remaining(self, key: object, ticket: int) -> float:
        left = super()._remaining(key, ticket)
        if self.__dict__.get("gap_thread") == threading.get_ident():
            self.__dict__.pop("gap_thread")
            self.__dict__.pop("gap")()
        return left


@pytest.mark.parametrize("keyed", [False, True], ids=["RateLimiter", "Keyed"])
def test_a_cancellation_on_another_thread_while_a_waiter_reads_its_wait_wakes_it(
    keyed: bool,
) -> None:
    # Waiter A (on another thread's event loop) holds the first slot (100 ms), waiter B the
    # second (200 ms). A is cancelled exactly while B is between reading its remaining wait and
    # going to sleep. B must still learn that its slot moved up to 100 ms: a waiter that read
    # first and only then asked to be woken slept to its old slot, 100 ms late.
    clock = StepClock()
    lim: Any = (GapKeyedRateLimiter if keyed else GapRateLimiter)(RATE, 1, clock=clock)

    def acquire() -> Any:
        return lim.acquire_async("k") if keyed else lim.acquire_async()

    assert lim.try_acquire("k") if keyed else lim.try_acquire()
    a_queued, cancel_a, a_gone = threading.Event(), threading.Event(), threading.Event()

    def other_thread() -> None:
        async def main() -> None:
            a = asyncio.create_task(acquire())
            await settle()  # A reserved the 100 ms slot and sleeps
            a_queued.set()
            cancel_a.wait(timeout=10)  # blocks this loop: A stays parked till now
            a.cancel()
            await asyncio.gather(a, return_exceptions=True)
            assert a.cancelled()
            a_gone.set()

        asyncio.run(main())

    def cancel_a_now() -> None:
        cancel_a.set()
        assert a_gone.wait(timeout=10), "A was not cancelled"

    async def main() -> int:
        thread = threading.Thread(target=other_thread)
        thread.start()
        try:
            assert a_queued.wait(timeout=10)
            lim.gap, lim.gap_thread = cancel_a_now, threading.get_ident()
            b = asyncio.create_task(acquire())
            await settle()
            assert "gap" not in lim.__dict__  # the gap really came
            wake = clock.next_wake()
            assert wake is not None
            clock.move_to(wake)
            clock.wake_due()
            await settle()
            await b
            return clock.now_ns()
        finally:
            cancel_a.set()
            thread.join(timeout=10)

    assert asyncio.run(main()) == SLOT  # B went at A's slot, not its own old one
    assert lim.get_stats()["waited"] == 1


def test_a_timeout_refuses_at_once_and_reserves_nothing() -> None:
    async def main() -> None:
        clock = StepClock()
        lim = RateLimiter(RATE, 1, clock=clock)
        assert lim.try_acquire()
        with pytest.raises(RateLimitExceeded) as info:
            await lim.acquire_async(timeout=0.05)
        assert info.value.retry_after == 0.1
        # Nothing was queued: the slot at 100 ms is still free for the next caller.
        task = asyncio.create_task(lim.acquire_async(timeout=0.1))
        await settle()
        clock.move_to(clock.next_wake() or 0)
        clock.wake_due()
        await task
        assert clock.now_ns() == SLOT

    asyncio.run(main())


# --- real event loop, real clock (short) ----------------------------------------------------------


def test_reg_L3_a_cancelled_waiter_hands_its_slot_to_the_next_on_the_real_clock() -> (
    None
):
    # python/cpython#90155: a woken waiter that is then cancelled must wake the next one.
    async def main() -> tuple[float, float]:
        lim = RateLimiter(2, 1)  # slots 500 ms apart
        t0 = time.perf_counter()
        assert lim.try_acquire()
        first = asyncio.create_task(lim.acquire_async())
        await asyncio.sleep(0)
        second = asyncio.create_task(lim.acquire_async())
        await asyncio.sleep(0.02)
        first.cancel()  # second moves up from its 1 s slot to the 500 ms one
        await second
        with pytest.raises(asyncio.CancelledError):
            await first
        return time.perf_counter() - t0, lim.get_stats()["waited"]

    elapsed, waited = asyncio.run(main())
    assert waited == 1
    # The slot it moved up to (0.5 s), far from the one it had (1 s): load can only add to
    # the time, by much less than the 250 ms between it and the middle.
    assert elapsed < halfway(0.5, 1.0), elapsed


def test_real_clock_fifo_with_cancellations() -> None:
    # The same on the real loop: 20 waiters 50 ms apart, 10 cancelled while queued.
    rng = random.Random(7)
    victims = set(rng.sample(range(20), 10))

    async def main() -> tuple[list[int], float]:
        lim = RateLimiter(20, 1)
        assert lim.try_acquire()
        order: list[int] = []

        async def waiter(i: int) -> None:
            await lim.acquire_async()
            order.append(i)

        t0 = time.perf_counter()
        tasks = []
        for i in range(20):
            tasks.append(asyncio.create_task(waiter(i)))
            await asyncio.sleep(0)
        await asyncio.sleep(0.005)
        for i in sorted(victims):
            tasks[i].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return order, time.perf_counter() - t0

    order, elapsed = asyncio.run(main())
    assert order == [i for i in range(20) if i not in victims]
    # 10 x 50 ms = 0.5 s; without give-back the survivors keep their 20 slots, 1 s.
    assert elapsed < halfway(0.5, 1.0), elapsed


def test_reg_L4_one_limiter_across_event_loops_and_threads() -> None:
    # aiolimiter#292: the limiter cached its event loop.
    lim = RateLimiter(200, 1)

    async def use() -> int:
        for _ in range(3):
            await lim.acquire_async()
        async with lim:
            pass
        return 4

    assert asyncio.run(use()) == 4
    assert asyncio.run(use()) == 4
    results: list[int] = []
    run_threads(2, lambda i: results.append(asyncio.run(use())), timeout=10)
    assert results == [4, 4]
    assert lim.get_stats()["admitted"] == 16


def test_reg_L12_waiting_never_blocks_the_event_loop() -> None:
    # PyrateLimiter#208: a sync wait inside async code froze the loop.
    async def worst_lag(work: Callable[[], Awaitable[object]]) -> float:
        lags: list[float] = []
        stop = False

        async def ticker() -> None:
            while not stop:
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append(time.perf_counter() - t - 0.001)

        tick = asyncio.create_task(ticker())
        await work()
        stop = True
        await tick
        return max(lags)

    async def main() -> tuple[float, float]:
        lim = RateLimiter(4, 1)  # 3 waiters: slots at 250, 500 and 750 ms
        assert lim.try_acquire()
        lag = await worst_lag(
            lambda: asyncio.gather(*(lim.acquire_async() for _ in range(3)))
        )
        # The baseline: the ticker's worst lag around a plain asyncio.sleep as long.
        return lag, await worst_lag(lambda: asyncio.sleep(0.75))

    lag, baseline = asyncio.run(main())
    # A blocking wait would stall the loop for a whole slot, 250 ms.
    assert lag < halfway(baseline, 0.25), (lag, baseline)
