"""Helpers shared by tests in every folder: the thread runner, and probes that see native code.

Contention tests start N threads behind one barrier so they really run at once, and must never
hang the suite or lose an error a thread raised. `run_threads` does that; `Threads` is the same
in two steps, for tests that act while the threads run (advance a clock, fork, release a gate).

`os_threads` lists the process's threads as the kernel sees them: `threading.enumerate()` only
knows threads started from Python, not a `std::thread` the Rust core might start. `rss_growth`
measures resident memory, which Rust allocations count in as much as Python ones
(`tracemalloc` sees only Python's).

`halfway` is the bound for the few tests that time real work: the machine may be loaded (CI
runners, two cores shared with builds), so a fixed number of milliseconds is not a bound; the
same work without the feature under test, timed in the same run, is.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest

__all__ = ["Threads", "halfway", "os_threads", "rss_growth", "run_threads"]


def halfway(baseline: float, broken: float) -> float:
    """The bound a timed result must stay under: halfway from `baseline` to `broken`.

    `baseline` is the same work done without the feature under test (an unprotected call, a
    plain sleep), timed in the same run, so it carries whatever load the machine has. `broken`
    is the least a broken implementation would take (the wait it would not cut short, the calls
    it would serialise). A correct result lands near the baseline; a broken one at or past
    `broken`. Tests choose durations that make the gap between the two wide (hundreds of ms),
    so load cannot push a correct result across the middle.
    """
    assert broken > baseline, (baseline, broken)
    return baseline + (broken - baseline) / 2


def os_threads() -> set[str]:
    """The ids of every thread of this process (`/proc/self/task`), native ones included."""
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("counting native threads needs /proc/self/task (Linux)")
    return set(os.listdir("/proc/self/task"))


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_growth(work: Callable[[], object]) -> int:
    """How many bytes the process's resident memory grew while `work()` ran.

    Memory stored per call is written, so it is resident: N calls that each keep b bytes grow
    this by about N x b, whichever language allocated them. Freed memory may stay resident, so
    warm the code up first; the number then only grows with what is kept.
    """
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("measuring resident memory needs /proc/self/statm (Linux)")
    before = _rss()
    work()
    return _rss() - before


class Threads:
    """`n` threads running `target(i)`, released together by a barrier.

    `start` is the barrier each thread waits at first (default: one of `n` parties, so the
    threads release each other). Pass one with more parties to release them from outside, e.g.
    `Barrier(n + 1)` and a `wait()` in the test once the scene is set.
    """

    def __init__(
        self,
        n: int,
        target: Callable[[int], object],
        *,
        start: threading.Barrier | None = None,
        barrier_timeout: float = 10.0,
    ) -> None:
        self.start_barrier = threading.Barrier(n) if start is None else start
        self.errors: list[BaseException] = []
        self._target = target
        self._barrier_timeout = barrier_timeout
        self._threads = [
            threading.Thread(target=self._worker, args=(i,)) for i in range(n)
        ]

    def _worker(self, i: int) -> None:
        try:
            self.start_barrier.wait(timeout=self._barrier_timeout)
            self._target(i)
        except BaseException as e:
            self.errors.append(e)

    def start(self) -> Threads:
        """Start every thread (each then waits at the barrier)."""
        for t in self._threads:
            t.start()
        return self

    def join(self, timeout: float = 30.0) -> None:
        """Join each thread; fail if one is still running, re-raise the first error raised."""
        for t in self._threads:
            t.join(timeout=timeout)
        assert not any(t.is_alive() for t in self._threads), "a thread did not finish"
        if self.errors:
            raise self.errors[0]


def run_threads(
    n: int,
    target: Callable[[int], object],
    *,
    start: threading.Barrier | None = None,
    timeout: float = 30.0,
) -> None:
    """Run `target(i)` for `i` in `range(n)`, each in its own thread, all released at once.

    Returns once every thread has finished (each joined with `timeout`); fails if one is still
    running and re-raises the first error a thread raised.
    """
    Threads(n, target, start=start).start().join(timeout)
