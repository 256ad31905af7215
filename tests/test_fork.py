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
import time
from collections.abc import Callable
from pathlib import Path
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


def run_in_child_while_held(
    locks: list[Any], work: Callable[[], dict[str, Any]]
) -> dict[str, Any] | str:
    """`run_in_child(work)` while another parent thread holds every one of `locks`."""
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
    try:
        assert holding.wait(WATCHDOG)
        return run_in_child(work)
    finally:
        release.set()
        holder.join()


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

    report = run_in_child_while_held(locks, child)
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


def test_a_bulkhead_held_and_waited_on_across_a_fork_starts_empty_in_the_child() -> (
    None
):
    """T42 for bulkheads: a parent thread holds the only slot, another waits in the queue, the
    manager's lock is held; the child sees an empty bulkhead and can run sync work under a
    timeout (its worker threads are its own)."""
    manager = riprap.BulkheadManager()
    bh = manager.get_bulkhead("forked", riprap.BulkheadConfig(max_concurrent_calls=1))
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with bh:
            holding.set()
            release.wait()

    def wait_in_queue() -> None:
        with bh:
            pass

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(WATCHDOG)
    waiter = threading.Thread(target=wait_in_queue)
    waiter.start()
    end = time.monotonic() + WATCHDOG
    while bh.get_stats()["queued_calls"] == 0:
        assert time.monotonic() < end
        time.sleep(0.001)
    manager._lock.acquire()  # held across the fork; the child gets a fresh one

    @riprap.timeout(1.0)
    def in_worker() -> str:
        return threading.current_thread().name

    def child() -> dict[str, Any]:
        before = bh.get_stats()
        with bh:
            inside = bh.get_stats()["active_calls"]
        return {
            "active": before["active_calls"],
            "queued": before["queued_calls"],
            "inside": inside,
            "same": manager.get_bulkhead("forked") is bh,
            "worker": in_worker().startswith("riprap-worker"),
        }

    try:
        report = run_in_child(child)
    finally:
        manager._lock.release()
        release.set()
        holder.join()
        waiter.join()
    assert report == {
        "active": 0,
        "queued": 0,
        "inside": 1,
        "same": True,
        "worker": True,
    }
    s = bh.get_stats()
    assert (s["active_calls"], s["queued_calls"], s["admitted_calls"]) == (0, 0, 2)


def test_fallback_cache_and_dead_letter_locks_held_at_the_fork(tmp_path: Path) -> None:
    """A parent thread holds the locks of a result cache, a fallback strategy, the fallback
    manager and a dead-letter queue across the fork; the child uses all four at once."""
    clock = ManualClock()
    cache = riprap.ResultCache(60.0, 10, clock=clock)
    cache.put("k", "parent")
    manager = riprap.ServiceFallbackManager()
    strategy = manager.get_strategy("svc", clock=clock)
    strategy.execute_with_fallback_sync(lambda: "fresh", [], cache_key="k")
    queue = riprap.DeadLetterQueue(tmp_path / "dlq.sqlite3")
    parent_id = queue.put("parent")
    locks = [cache._lock, strategy._lock, manager._lock, queue._lock]

    def child() -> dict[str, Any]:
        return {
            "cache": cache.get("k"),
            "strategy_calls": strategy.get_stats()["calls"],
            "served": strategy.execute_with_fallback_sync(
                lambda: 1 / 0, [], cache_key="k", default_value="default"
            ),
            "same_strategy": manager.get_strategy("svc") is strategy,
            "put": queue.put("child") > parent_id,
            "operations": [e.operation for e in queue.list()],
        }

    report = run_in_child_while_held(locks, child)
    assert report == {
        "cache": None,  # a forked child's cache starts empty
        "strategy_calls": 0,
        "served": "default",  # the parent's cached value is not in the child
        "same_strategy": True,
        "put": True,
        "operations": [
            "parent",
            "child",
        ],  # the file is shared: the entries are not state
    }
    assert cache.get("k") == "parent"
    assert strategy.get_stats()["calls"] == 1
    assert [e.operation for e in queue.list()] == ["parent", "child"]
    queue.close()
