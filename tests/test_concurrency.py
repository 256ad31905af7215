"""Bounded thread tests: invariants under contention, not timings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from helpers import halfway, run_threads

import riprap
from riprap.testing import ManualClock


def test_per_call_retry_state_is_isolated_across_threads() -> None:
    # jd/tenacity#701: concurrent calls must not share attempt counters.
    clock = ManualClock()
    local = threading.local()
    attempts: dict[int, list[int]] = {}

    @riprap.retry(max_attempts=4, base_delay=0.0, jitter=False, clock=clock)
    def op(i: int) -> int:
        local.n = getattr(local, "n", 0) + 1
        attempts.setdefault(i, []).append(local.n)
        if local.n % 3:
            raise ConnectionError("again")
        return i

    results: dict[int, int] = {}

    def target(i: int) -> None:
        for k in range(200):
            results[i * 1000 + k] = op(i)

    run_threads(16, target)
    assert len(results) == 16 * 200
    assert all(v == k // 1000 for k, v in results.items())
    # Each call took exactly three attempts on its own thread.
    assert all(len(a) == 600 for a in attempts.values())


def test_shared_budget_counts_exactly_under_threads() -> None:
    clock = ManualClock()
    budget = riprap.RetryBudget(ratio=0.5, min_per_second=0.0, window=10.0, clock=clock)
    granted = []
    lock = threading.Lock()

    def target(i: int) -> None:
        mine = 0
        for _ in range(2000):
            budget.deposit()
            mine += budget.try_withdraw()
        with lock:
            granted.append(mine)

    run_threads(8, target)
    stats = budget.get_stats()
    assert stats["total_deposits"] == 16_000
    assert sum(granted) == stats["total_withdrawals"]
    assert stats["total_withdrawals"] + stats["total_refused"] == 16_000
    assert stats["total_withdrawals"] <= 8000  # never more than ratio x deposits


def test_retry_sleeps_do_not_serialise_threads() -> None:
    # pybreaker-style serialisation check: 8 threads each wait one real 100 ms backoff; a lock held
    # across the wait (or a sleep that kept the GIL) would take 800 ms. The baseline is the
    # same 8 threads each sleeping 100 ms in time.sleep, timed in the same run.
    calls: dict[int, int] = {}

    @riprap.retry(max_attempts=2, base_delay=0.1, jitter=False)
    def op(i: int) -> None:
        calls[i] = calls.get(i, 0) + 1
        if calls[i] == 1:
            raise ConnectionError("first")

    def timed(work: Callable[[int], object]) -> float:
        t0 = time.perf_counter()
        run_threads(8, work)
        return time.perf_counter() - t0

    baseline = timed(lambda i: time.sleep(0.1))
    elapsed = timed(op)
    assert elapsed < halfway(baseline, 8 * 0.1), (elapsed, baseline)
    assert calls == dict.fromkeys(range(8), 2)
