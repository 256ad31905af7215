"""Helpers for the limiter tests: a virtual-time clock whose `asleep` really suspends, and a
Fraction model of GCRA (an exact oracle for both backends).

`riprap.testing.ManualClock.asleep` advances at once without yielding, so an async waiter on it
can never be caught mid-wait. `StepClock.asleep` parks the caller until the test moves virtual
time past its wake-up (`step`), which makes cancellation races deterministic: a test can resolve
a waiter's sleep and cancel it in the same loop tick.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from fractions import Fraction

from riprap.testing import ManualClock

NS = 10**9


class StepClock(ManualClock):
    """A manual clock whose `asleep(s)` suspends until `step()` reaches its wake-up time."""

    def _heap(self) -> list[tuple[int, int, asyncio.Future[None]]]:
        return self.__dict__.setdefault("sleepers", [])  # type: ignore[no-any-return]

    async def asleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        seq = self.__dict__.setdefault("seq", [0])
        seq[0] += 1
        when = self.now_ns() + round(seconds * NS)
        heapq.heappush(self._heap(), (when, seq[0], fut))
        await fut

    def next_wake(self) -> int | None:
        """The earliest wake-up of a sleeper that is still waiting."""
        heap = self._heap()
        while heap and heap[0][2].done():
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def move_to(self, ns: int) -> None:
        """Set virtual time (forwards only)."""
        if ns > self.now_ns():
            self.advance((ns - self.now_ns()) / NS)
        assert self.now_ns() == max(ns, self.now_ns())

    def wake_due(self) -> int:
        """Resolve every sleeper whose time has come; returns how many."""
        heap, woken = self._heap(), 0
        while heap and heap[0][0] <= self.now_ns():
            _, _, fut = heapq.heappop(heap)
            if not fut.done():
                fut.set_result(None)
                woken += 1
        return woken


async def settle(rounds: int = 40) -> None:
    """Let every ready task run until the loop is quiet."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class Oracle:
    """GCRA in exact rationals (seconds), with the representation riprap documents: the interval
    `1e9/rate` ns rounded up, the tolerance `burst x interval` rounded down."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        b = Fraction(max(1.0, rate) if burst is None else burst)
        t_ns = math.ceil(Fraction(NS) / Fraction(rate))
        self.interval = Fraction(t_ns, NS)
        self.tolerance = Fraction(math.floor(b * t_ns), NS)
        self.tat = Fraction(0)

    def wait(self, now: Fraction, n: int) -> Fraction:
        """Seconds until `n` tokens could be taken at `now` (0: now)."""
        end = max(self.tat, now) + n * self.interval
        return max(Fraction(0), end - self.tolerance - now)

    def take(self, now: Fraction, n: int) -> bool:
        """Take `n` tokens if they are there."""
        if self.wait(now, n):
            return False
        self.tat = max(self.tat, now) + n * self.interval
        return True


def worst_window_excess(
    admitted: list[tuple[int, int]], rate: Fraction, burst: Fraction
) -> Fraction:
    """max over windows [t_i, t_j] of tokens - (burst + rate x (t_j - t_i)); <= 0 means every
    window holds the bound. `admitted` holds (time in ns, tokens). O(n) after sorting."""
    worst = -burst
    before = 0
    start_min: Fraction | None = None
    for t, n in sorted(admitted):
        ft = Fraction(t, NS)
        start = before - rate * ft
        start_min = start if start_min is None else min(start_min, start)
        before += n
        worst = max(worst, before - rate * ft - start_min - burst)
    return worst
