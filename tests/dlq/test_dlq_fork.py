"""A forked child never hangs on a lock a parent thread held, and starts fresh.

A parent thread holds the lock of a result cache, a fallback strategy, the fallback manager and a
dead-letter queue across `os.fork()`; the child uses all four at once (2 s watchdog) and reports
what it saw. Runs on the active backend.
"""

from __future__ import annotations

import json
import os
import select
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import riprap
from riprap.testing import ManualClock

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

WATCHDOG = 2.0


def run_in_child(work: Callable[[], dict[str, Any]]) -> dict[str, Any] | str:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
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
        return json.loads(b"".join(chunks))  # type: ignore[no-any-return]
    finally:
        os.close(r)
        os.waitpid(pid, 0)


def test_locks_held_at_the_fork_never_block_the_child(tmp_path: Path) -> None:
    clock = ManualClock()
    cache = riprap.ResultCache(60.0, 10, clock=clock)
    cache.put("k", "parent")
    manager = riprap.ServiceFallbackManager()
    strategy = manager.get_strategy("svc", clock=clock)
    strategy.execute_with_fallback_sync(lambda: "fresh", [], cache_key="k")
    queue = riprap.DeadLetterQueue(tmp_path / "dlq.sqlite3")
    parent_id = queue.put("parent")
    locks = [cache._lock, strategy._lock, manager._lock, queue._lock]
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

    try:
        report = run_in_child(child)
    finally:
        release.set()
        holder.join()
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
