"""Benchmark cases for the bulkhead: riprap vs the standard library's semaphores and resilix.

Every implementation allows 10 calls at once and is measured uncontended (the cost every call
pays; a full bulkhead makes callers wait, which is not an overhead). Rows:

* decorator, sync: a decorated function. Peers: a `threading.Lock` around the call (the floor
  of any C-level guard), a `threading.BoundedSemaphore` (what people write by hand; it is
  Python code on a Condition), resilix's `protect.bulkhead(10)`.
* `with`, sync: a `with` block around the call.
* decorator, async: one `await` of a guarded coroutine function, driven to completion by
  hand, without an event loop (none of them suspends when a slot is free). resilix looks the
  running loop up, so its call runs while an event loop is set as the thread's running loop,
  and it is measured against a bare call wrapped the same way. The hand-rolled peer is a counter
  of calls in flight checked in an `async def` wrapper (the least a bulkhead does), next to
  `async with asyncio.Semaphore(10)` around the call; "await bare" is the cost of driving the
  coroutine alone.
* decorator, sync, adaptive: the adaptive limit reads the clock twice per call (it measures
  every call) and takes a short lock to record the sample.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from .breaker import abare, drive
from .harness import Case, Thunk, bare

__all__ = ["CASES"]

LIMIT = 10


def _riprap(target: Callable[..., Any], level: str = "strict") -> Any:
    import riprap

    bh = riprap.Bulkhead(
        "bench",
        riprap.BulkheadConfig(max_concurrent_calls=LIMIT, isolation_level=level),
    )
    return bh(target)


def _riprap_with() -> Thunk:
    import riprap

    bh = riprap.Bulkhead("bench", riprap.BulkheadConfig(max_concurrent_calls=LIMIT))

    def run() -> object:
        with bh:
            return bare()

    return run


def _lock(target: Thunk) -> Thunk:
    lock = threading.Lock()

    def guarded() -> object:
        with lock:
            return target()

    return guarded


def _bounded_semaphore(target: Thunk) -> Thunk:
    sem = threading.BoundedSemaphore(LIMIT)

    def guarded() -> object:
        with sem:
            return target()

    return guarded


def _asyncio_semaphore(target: Callable[[], Awaitable[Any]]) -> Callable[[], Any]:
    sem = asyncio.Semaphore(LIMIT)

    async def guarded() -> object:
        async with sem:
            return await target()

    return guarded


class HandRolledFullError(Exception):
    """The hand-rolled bulkhead's rejection."""


def _hand_rolled_async(target: Callable[[], Awaitable[Any]]) -> Callable[[], Any]:
    """A counter of calls in flight, checked before the call: the least an async bulkhead does."""
    active = [0]

    async def guarded() -> object:
        if active[0] >= LIMIT:
            raise HandRolledFullError("bulkhead full")
        active[0] += 1
        try:
            return await target()
        finally:
            active[0] -= 1

    return guarded


def _in_loop(thunk: Thunk) -> Thunk:
    """`thunk` run while a (never started) event loop is the thread's running loop."""
    loop = asyncio.new_event_loop()
    set_running = asyncio.events._set_running_loop

    def run() -> object:
        set_running(loop)
        try:
            return thunk()
        finally:
            set_running(None)

    return run


def _resilix(target: Callable[..., Any]) -> Any:
    import resilix

    return resilix.protect.bulkhead(LIMIT)(target)


PEERS = {"resilix": "resilix"}

CASES: list[Case] = [
    Case(
        "bulkhead_decorated",
        "bulkhead decorator, sync",
        60.0,
        {
            "riprap": lambda: _riprap(bare),
            "threading.Lock": lambda: _lock(bare),
            "threading.BoundedSemaphore": lambda: _bounded_semaphore(bare),
            "resilix": lambda: _resilix(bare),
        },
        PEERS,
    ),
    Case(
        "bulkhead_with",
        "`with bulkhead:` around a call, sync",
        120.0,
        {
            "riprap": _riprap_with,
            "threading.Lock": lambda: _lock(bare),
            "threading.BoundedSemaphore": lambda: _bounded_semaphore(bare),
        },
    ),
    Case(
        "bulkhead_async",
        "bulkhead decorator, async (one await, driven)",
        None,
        {
            "riprap": lambda: drive(_riprap(abare)),
            "await bare": lambda: drive(abare),
            "hand-rolled": lambda: drive(_hand_rolled_async(abare)),
            "asyncio.Semaphore": lambda: drive(_asyncio_semaphore(abare)),
            "resilix": lambda: _in_loop(drive(_resilix(abare))),
        },
        PEERS,
        baselines={"resilix": lambda: _in_loop(bare)},
        target_impl="hand-rolled",
    ),
    Case(
        "bulkhead_adaptive",
        "adaptive bulkhead decorator, sync",
        None,
        {"riprap": lambda: _riprap(bare, "adaptive")},
    ),
]
