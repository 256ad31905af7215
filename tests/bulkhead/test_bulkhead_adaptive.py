"""The adaptive bulkhead: AIMD on failures, timeouts and latency.

On a manual clock: injected failures, slow calls and constant timeouts push the limit down
(never up: Netflix/concurrency-limits#137); once the dependency recovers, calls made while the
limit is really in use bring it back to the maximum; it never leaves [1, max]; rejected,
cancelled and ignored calls (another layer's rejection) move it neither way
(Netflix/concurrency-limits#176). Runs on both backends.
"""

from __future__ import annotations

import asyncio
import random

import pytest

import riprap
from riprap import Bulkhead, BulkheadConfig, BulkheadRejectedError, BulkheadTimeoutError
from riprap.testing import ManualClock

MAX = 8


def adaptive(clock: ManualClock, **fields: object) -> Bulkhead:
    config = {
        "max_concurrent_calls": MAX,
        "timeout": 2.0,
        "isolation_level": "adaptive",
    }
    config.update(fields)
    return Bulkhead("adaptive", BulkheadConfig(**config), clock=clock)  # type: ignore[arg-type]


def recover(bh: Bulkhead, rounds: int = 200) -> list[int]:
    """Healthy traffic: bursts of `current_limit` concurrent fast calls. Returns the limits seen."""

    @bh
    async def healthy() -> None:
        await asyncio.sleep(0)  # every call of the burst is in flight at once

    async def main() -> list[int]:
        seen = []
        for _ in range(rounds):
            await asyncio.gather(*(healthy() for _ in range(bh.current_limit)))
            seen.append(bh.current_limit)
            if bh.current_limit == MAX:
                break
        return seen

    return asyncio.run(main())


def test_failures_halve_the_limit_and_recovery_climbs_back_to_the_maximum(
    clock: ManualClock,
) -> None:
    bh = adaptive(clock)

    @bh
    def failing() -> None:
        raise ConnectionError("down")

    limits = []
    for _ in range(4):
        with pytest.raises(ConnectionError):
            failing()
        limits.append(bh.current_limit)
    assert limits == [4, 2, 1, 1]
    seen = recover(bh)
    assert seen[-1] == MAX
    assert seen == sorted(seen), "recovery only ever climbs"
    assert all(1 <= limit <= MAX for limit in seen)
    assert bh.get_stats()["current_limit"] == MAX


def test_slow_successes_push_the_limit_down(clock: ManualClock) -> None:
    bh = adaptive(clock, slow_call_duration=0.5)

    @bh
    def slow(seconds: float) -> str:
        clock.advance(seconds)
        return "ok"

    assert slow(0.49) == "ok"
    assert bh.current_limit == MAX
    assert slow(0.5) == "ok"
    assert bh.current_limit == MAX // 2
    # Without slow_call_duration, half of `timeout` is slow.
    bh2 = adaptive(clock)
    with bh2:
        clock.advance(1.0)
    assert bh2.current_limit == MAX // 2


def test_reg_constant_timeouts_push_the_limit_down_never_up(clock: ManualClock) -> None:
    bh = adaptive(clock)

    @bh
    async def hangs() -> None:
        await clock.asleep(5.0)  # longer than the 2 s timeout, every time

    async def main() -> list[int]:
        limits = []
        for _ in range(6):
            with pytest.raises(BulkheadTimeoutError):
                await hangs()
            limits.append(bh.current_limit)
        return limits

    assert asyncio.run(main()) == [4, 2, 1, 1, 1, 1]
    assert bh.get_stats()["timed_out_calls"] == 6


def test_rejected_cancelled_and_ignored_calls_move_the_limit_neither_way(
    clock: ManualClock,
) -> None:
    bh = adaptive(clock, max_queue_size=0)
    assert bh.current_limit == MAX

    @bh
    def refused_inside() -> None:
        raise riprap.CircuitOpenError("inner", 1.0)

    @bh
    def interrupted() -> None:
        raise KeyboardInterrupt

    for _ in range(10):
        with pytest.raises(riprap.CircuitOpenError):
            refused_inside()
        with pytest.raises(KeyboardInterrupt):
            interrupted()
    permits = [bh.acquire() for _ in range(MAX)]
    for _ in range(10):
        with pytest.raises(BulkheadRejectedError):
            bh.acquire()

    @bh
    async def cancelled() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        for p in permits:
            bh.release(p)
        for _ in range(5):
            task = asyncio.create_task(cancelled())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    s = bh.get_stats()
    assert s["current_limit"] == MAX
    assert s["rejected_queue_full"] == 10


def test_an_idle_bulkhead_does_not_grow_on_unused_headroom(clock: ManualClock) -> None:
    bh = adaptive(clock)

    @bh
    def failing() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        failing()
    assert bh.current_limit == 4

    @bh
    def ok() -> int:
        return 1

    # One call at a time uses 1 of 4: it proves nothing about the dependency's headroom.
    for _ in range(100):
        ok()
    assert bh.current_limit == 4


def test_the_limit_never_leaves_its_range_under_random_traffic(
    clock: ManualClock,
) -> None:
    rng = random.Random(4)
    bh = adaptive(clock, max_queue_size=4)

    @bh
    async def call(kind: int) -> None:
        await asyncio.sleep(0)
        if kind == 0:
            raise ConnectionError
        if kind == 1:
            await clock.asleep(rng.choice([0.1, 1.5, 3.0]))

    async def main() -> None:
        for _ in range(300):
            n = rng.randrange(1, 12)
            results = await asyncio.gather(
                *(call(rng.randrange(6)) for _ in range(n)), return_exceptions=True
            )
            assert all(
                r is None or isinstance(r, (ConnectionError, riprap.ResilienceError))
                for r in results
            )
            assert 1 <= bh.current_limit <= MAX

    asyncio.run(main())
    assert recover(bh)[-1] == MAX
