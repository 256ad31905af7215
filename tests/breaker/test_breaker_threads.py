"""Threads through one breaker: no serialisation, and a strict half-open gate.

Runs on the active backend. The parallelism audit proves overlap deterministically (a barrier
inside the guarded function that only opens when all eight calls are inside at once) and also
times it in real time (100 ms calls) against the same calls without a breaker, timed in the
same run. The stampede uses a ManualClock advanced past the open timeout while 64 threads wait
at a barrier.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers import Threads, halfway, run_threads

from riprap import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from riprap.testing import ManualClock


def timed_parallel(call: Callable[[], object]) -> float:
    """Seconds from releasing 8 threads together to the last of their calls returning."""
    start = threading.Barrier(9)
    threads = Threads(8, lambda i: call(), start=start).start()
    start.wait(timeout=10)
    t0 = time.perf_counter()
    threads.join()
    return time.perf_counter() - t0


@pytest.mark.parametrize("form", ["decorator", "with", "engine.call"])
def test_eight_threads_through_a_closed_breaker_run_in_parallel(form: str) -> None:
    # pybreaker holds its lock around the call (8 x 20 ms took 163 ms, not 21 ms).
    b = CircuitBreaker("parallel")
    inside = threading.Barrier(8)

    def work() -> str:
        # Only passes when all eight calls are inside the breaker at the same time: a breaker
        # that serialised them would break this barrier (BrokenBarrierError after 5 s).
        inside.wait(timeout=5)
        time.sleep(0.1)
        return "done"

    def with_block() -> str:
        with b:
            return work()

    guarded: Callable[[], object] = {
        "decorator": b(work),
        "with": with_block,
        "engine.call": lambda: b._engine.call(work),
    }[form]
    unprotected = timed_parallel(work)
    elapsed = timed_parallel(guarded)
    s = b.get_stats()
    assert (s["total_successes"], s["state"]) == (8, "closed")
    # About as long as the eight calls with no breaker, far from the 800 ms that calls run
    # one after another need.
    assert elapsed < halfway(unprotected, 8 * 0.1), (elapsed, unprotected)


@pytest.mark.parametrize("form", ["decorator", "with"])
@pytest.mark.parametrize("max_calls", [1, 3])
def test_reg_B1_64_threads_at_the_half_open_instant_let_at_most_max_calls_in(
    form: str, max_calls: int
) -> None:
    # resilience4j/resilience4j#1432, App-vNext/Polly#216: a stampede at the moment the
    # open timeout ends. Admitted calls stay inside until every thread has tried, so each of
    # the 64 sees the gate with the trial slots taken.
    clock = ManualClock()
    b = CircuitBreaker(
        "stampede",
        CircuitBreakerConfig(timeout=30.0, half_open_max_calls=max_calls),
        clock=clock,
    )
    transitions: list[tuple[CircuitState, CircuitState]] = []
    b.add_listener(lambda name, old, new: transitions.append((old, new)))
    b.force_open()
    changed = threading.Condition()
    counts = {"entered": 0, "rejected": 0}
    release = threading.Event()
    retry_afters: set[float] = set()

    def work() -> None:
        with changed:
            counts["entered"] += 1
            changed.notify_all()
        assert release.wait(timeout=10)

    guarded = b(work)

    def target(i: int) -> None:
        try:
            if form == "decorator":
                guarded()
            else:
                with b:
                    work()
        except CircuitOpenError as e:
            with changed:
                counts["rejected"] += 1
                retry_afters.add(e.retry_after)
                changed.notify_all()

    start = threading.Barrier(65)
    threads = Threads(64, target, start=start).start()
    clock.advance(30.0)  # the half-open instant, while all 64 wait at the barrier
    start.wait(timeout=10)
    with changed:
        # Every thread has either entered the function or been rejected (no polling).
        changed.wait_for(
            lambda: counts["entered"] + counts["rejected"] == 64, timeout=10
        )
        entered, rejected = counts["entered"], counts["rejected"]
    # The rejected callers came back at once, while the admitted ones were still inside.
    assert (entered, rejected) == (max_calls, 64 - max_calls)
    assert retry_afters == {0.0}  # half-open with its trial slots taken
    assert b.get_stats()["half_open_calls"] == max_calls
    release.set()
    threads.join()
    assert transitions[:2] == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
    ]
    assert transitions.count((CircuitState.OPEN, CircuitState.HALF_OPEN)) == 1
    assert b.get_stats()["half_open_calls"] == 0


def test_reg_P2_sixteen_threads_on_one_breaker_count_exactly() -> None:
    # No "Already borrowed" (PyO3 under free-threading), no lost updates, invariants hold under
    # contention.
    clock = ManualClock()
    b = CircuitBreaker(
        "shared",
        CircuitBreakerConfig(failure_threshold=10**9, minimum_calls=10**9),
        clock=clock,
    )

    @b
    def op(i: int) -> int:
        if i % 4 == 0:
            raise ConnectionError("down")
        if i % 4 == 1:
            raise KeyboardInterrupt  # never counted
        return i

    def target(t: int) -> None:
        for k in range(2000):
            try:
                op(t + k)
            except (ConnectionError, KeyboardInterrupt):
                pass
            if k % 100 == 0:
                clock.advance(0.5)
                b.get_stats()

    run_threads(16, target)
    s: dict[str, Any] = b.get_stats()
    assert s["total_calls"] == 32_000
    assert (s["total_failures"], s["total_cancelled"], s["total_successes"]) == (
        8_000,
        8_000,
        16_000,
    )
    assert s["state"] == "closed"
