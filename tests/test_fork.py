"""A forked child never hangs on a lock a parent thread held, and starts fresh (the bug of
RustPython/RustPython#7178 and daboross/fern#59), for every component built so far.

The parent hammers one breaker, limiter, keyed limiter, retry budget and adaptive strategy from
8 threads while it forks, so a child regularly inherits a lock that some parent thread held at
that instant. Each child uses everything once and reports its state through a pipe; the parent
waits for the report with a watchdog (`select`), so a hung child fails the test instead of
hanging it. A child that hangs on an inherited lock never reports, so the watchdog only has to
outlast an honest child on a loaded machine (a child reports in well under a second; 2 s was
seen to be too short with the machine at load 8): it is 20 s, and the first hang ends the
test. Runs on both backends.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import Threads

import riprap
from riprap.testing import ManualClock

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns that forking a multi-threaded process may deadlock: that is the point.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

WATCHDOG = 20.0
LOCK = type(threading.Lock())


def run_in_child(work: Callable[[], dict[str, Any]]) -> dict[str, Any] | str:
    """Fork; run `work` in the child; its result (JSON), or "hung" if none came in time."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        code = 0
        try:
            os.close(r)
            os.write(w, json.dumps(work()).encode())
        except BaseException as e:
            os.write(w, json.dumps({"error": repr(e)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], WATCHDOG)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return "hung"
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        return json.loads(b"".join(chunks)) if chunks else "no report"
    finally:
        os.close(r)
        os.waitpid(pid, 0)


class Parts:
    """One of each stateful component, on a manual clock so every use is deterministic."""

    def __init__(self, name: str) -> None:
        self.clock = ManualClock()
        self.breaker = riprap.CircuitBreaker(name, clock=self.clock)
        self.limiter = riprap.RateLimiter(1e9, 1e9, clock=self.clock)
        self.keyed = riprap.KeyedRateLimiter(
            1e9, 1e9, max_keys=100_000, clock=self.clock
        )
        self.budget = riprap.RetryBudget(
            ratio=0.5, min_per_second=1.0, window=10.0, clock=self.clock
        )
        self.adaptive = riprap.AdaptiveBackoffStrategy()
        self.guarded = self.breaker(lambda: 1)

    def use(self, i: int) -> None:
        self.guarded()
        self.limiter.try_acquire()
        self.keyed.try_acquire(i % 50_000)
        self.budget.deposit()
        self.budget.try_withdraw()
        self.adaptive.record_operation_result("op", i % 3 != 0)

    def report(self) -> dict[str, Any]:
        return {
            "breaker": self.breaker.get_stats()["total_successes"],
            "limiter": self.limiter.get_stats()["admitted"],
            "keyed": len(self.keyed),
            "budget": self.budget.get_stats(),
            "adaptive": self.adaptive.success_rate("op"),
        }


def test_children_forked_under_load_never_hang_and_start_fresh() -> None:
    parts = Parts("forked")
    stop = threading.Event()

    def hammer(seed: int) -> None:
        i = seed
        while not stop.is_set():
            parts.use(i)
            i += 8

    threads = Threads(8, hammer).start()

    def child() -> dict[str, Any]:
        parts.use(1)
        return parts.report()

    reports: list[dict[str, Any] | str] = []
    try:
        while len(reports) < 40 and "hung" not in reports:
            reports.append(run_in_child(child))
    finally:
        stop.set()
        threads.join()
    fresh = Parts("fresh")
    fresh.use(1)
    expected = fresh.report()
    assert [r for r in reports if r != expected] == []
    # The parent is unaffected: it kept counting through all the forks.
    assert parts.limiter.get_stats()["admitted"] > 40


def test_a_lock_held_by_a_parent_thread_at_the_fork_never_blocks_the_child() -> None:
    """Deterministic: a parent thread holds every Python-level lock across the fork.

    The registry, the retry managers and (on the python backend) the primitives' twins hold a
    `threading.Lock`. The Rust core's locks cannot be held from Python; `rust/core/src/fork.rs`
    tests a value locked forever directly.
    """
    clock = ManualClock()
    registry = riprap.CircuitBreakerRegistry()
    held_breaker = registry.get_breaker("held", clock=clock)
    manager = riprap.RetryManager(clock=clock)
    smart = riprap.IntelligentRetryManager(clock=clock)

    async def ok() -> int:
        return 1

    asyncio.run(manager.retry_with_backoff(ok, operation_id="op"))
    asyncio.run(smart.smart_retry(ok, operation_type="network"))
    limiter = riprap.RateLimiter(10.0, 10.0, clock=clock)
    limiter.try_acquire()
    objects: list[object] = [registry, manager, smart, limiter, clock]
    locks = [o._lock for o in objects if isinstance(getattr(o, "_lock", None), LOCK)]
    assert len(locks) >= 3  # registry and both managers, on either backend

    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        for lock in locks:
            lock.acquire()
        holding.set()
        release.wait()
        for lock in locks:
            lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(WATCHDOG)

    def child() -> dict[str, Any]:
        before = {
            "operations": manager.operations(),
            "metrics": dict(smart.performance_metrics),
            "admitted": limiter.get_stats()["admitted"],
        }
        asyncio.run(manager.retry_with_backoff(ok, operation_id="again"))
        return {
            **before,
            "same_breaker": registry.get_breaker("held") is held_breaker,
            "after": manager.operations(),
            "limiter": limiter.try_acquire(),
        }

    try:
        report = run_in_child(child)
    finally:
        release.set()
        holder.join()
    assert report == {
        "operations": [],
        "metrics": {},
        "admitted": 0,
        "same_breaker": True,
        "after": ["again"],
        "limiter": True,
    }
    # The parent is unaffected.
    assert manager.operations() == ["op"]
    assert list(smart.performance_metrics) == ["network"]
    assert limiter.get_stats()["admitted"] == 1
