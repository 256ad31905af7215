"""Benchmark cases for the circuit breaker: riprap vs a hand-rolled breaker and the peers.

Peers: pybreaker, circuitbreaker, purgatory and aiobreaker, each configured as close to riprap's
defaults as it allows (5 failures, 60 s open). Rows:

* closed, sync: a successful call through a closed breaker.
* open, sync: the cost to reject (the thunk catches the breaker's error).
* closed with 10 vs 1,000,000 calls in the window: riprap's cost per call does not depend on the
  traffic it remembers (the seed's list-filtering window did: 4.5 ms per call at 100k). The
  counts are what the window holds before timing starts; timing adds the same number of calls
  to both.
* closed, async: one `await` of a guarded coroutine function, driven to completion without an
  event loop (none of the breakers suspends on success). Driving a coroutine costs a few hundred
  ns by itself: the "await bare" column is exactly that cost with no breaker, for reference.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .harness import Case, Thunk, bare

__all__ = ["CASES", "abare", "drive"]


async def abare() -> int:
    """The coroutine function async cases guard."""
    return 1


def drive(make: Callable[[], Awaitable[Any]]) -> Thunk:
    """A thunk that runs one `await make()` to completion without an event loop."""

    def run() -> object:
        coro = make().__await__()
        try:
            coro.send(None)
        except StopIteration as stop:
            return stop.value
        raise RuntimeError("the guarded coroutine suspended")

    return run


def rejecting(call: Thunk, error: type[BaseException]) -> Thunk:
    """A thunk that calls `call` and catches the breaker's rejection."""

    def run() -> object:
        try:
            return call()
        except error:
            return None

    return run


# --- implementations ---------------------------------------------------------------------------


class HandRolledOpenError(Exception):
    """The hand-rolled breaker's rejection."""


def _hand_rolled(target: Callable[[], Any], *, is_open: bool = False) -> Thunk:
    """Consecutive failures and an open timer: the least a breaker does, in plain Python."""
    state = [0, time.monotonic() + 60.0 if is_open else 0.0]  # failures, open until
    monotonic = time.monotonic

    def guarded() -> object:
        if state[1] and monotonic() < state[1]:
            raise HandRolledOpenError("circuit open")
        try:
            result = target()
        except Exception:
            state[0] += 1
            if state[0] >= 5:
                state[1] = monotonic() + 60.0
            raise
        state[0] = 0
        return result

    return guarded


def _hand_rolled_async(target: Callable[[], Awaitable[Any]]) -> Callable[[], Any]:
    state = [0, 0.0]
    monotonic = time.monotonic

    async def guarded() -> object:
        if state[1] and monotonic() < state[1]:
            raise HandRolledOpenError("circuit open")
        try:
            result = await target()
        except Exception:
            state[0] += 1
            if state[0] >= 5:
                state[1] = monotonic() + 60.0
            raise
        state[0] = 0
        return result

    return guarded


def _riprap(
    target: Callable[..., Any], *, is_open: bool = False, filled: int = 0
) -> Any:
    import riprap

    breaker = riprap.CircuitBreaker("bench")
    guarded = breaker(target)
    for _ in range(filled):
        guarded()
    if is_open:
        breaker.force_open()
    return guarded


def _riprap_filled(filled: int) -> Thunk:
    guarded: Thunk = _riprap(bare, filled=filled)
    return guarded


def _pybreaker(target: Thunk, *, is_open: bool = False) -> Thunk:
    import pybreaker

    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    if is_open:
        breaker.open()
    return breaker(target)


def _circuitbreaker(target: Callable[..., Any], *, is_open: bool = False) -> Any:
    import circuitbreaker  # type: ignore[import-untyped]

    breaker = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=60)
    if is_open:

        def fail() -> None:
            raise ConnectionError("down")

        failing = breaker(fail)
        for _ in range(5):
            with contextlib.suppress(ConnectionError):
                failing()
    return breaker(target)


def _aiobreaker(target: Callable[..., Any], *, is_open: bool = False) -> Any:
    from datetime import timedelta

    import aiobreaker  # type: ignore[import-untyped]

    breaker = aiobreaker.CircuitBreaker(
        fail_max=5, timeout_duration=timedelta(seconds=60)
    )
    if is_open:
        breaker.open()
    return breaker(target)


def _purgatory_sync(target: Thunk, *, is_open: bool = False) -> Thunk:
    import purgatory

    factory = purgatory.SyncCircuitBreakerFactory(default_threshold=5, default_ttl=60)
    guarded: Thunk = factory("bench")(target)
    if is_open:

        def fail() -> None:
            raise ConnectionError("down")

        failing = factory("bench")(fail)
        for _ in range(5):
            with contextlib.suppress(ConnectionError):
                failing()
    return guarded


def _purgatory_async(target: Callable[[], Awaitable[Any]]) -> Callable[[], Any]:
    import purgatory

    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=60)
    return factory("bench")(target)  # type: ignore[no-any-return]


def _open_error(impl: str) -> type[BaseException]:
    if impl == "riprap":
        from riprap import CircuitOpenError

        return CircuitOpenError
    if impl == "pybreaker":
        import pybreaker

        return pybreaker.CircuitBreakerError
    if impl == "circuitbreaker":
        import circuitbreaker

        return circuitbreaker.CircuitBreakerError  # type: ignore[no-any-return]
    if impl == "aiobreaker":
        import aiobreaker

        return aiobreaker.CircuitBreakerError  # type: ignore[no-any-return]
    if impl == "purgatory":
        from purgatory.domain.model import OpenedState

        return OpenedState
    return HandRolledOpenError


OPEN_BUILDERS: dict[str, Callable[[], Thunk]] = {
    "riprap": lambda: _riprap(bare, is_open=True),
    "hand-rolled": lambda: _hand_rolled(bare, is_open=True),
    "pybreaker": lambda: _pybreaker(bare, is_open=True),
    "circuitbreaker": lambda: _circuitbreaker(bare, is_open=True),
    "aiobreaker": lambda: _aiobreaker(bare, is_open=True),
    "purgatory": lambda: _purgatory_sync(bare, is_open=True),
}

PEERS = {
    "pybreaker": "pybreaker",
    "circuitbreaker": "circuitbreaker",
    "aiobreaker": "aiobreaker",
    "purgatory": "purgatory",
}


def _rejecting(impl: str) -> Callable[[], Thunk]:
    return lambda: rejecting(OPEN_BUILDERS[impl](), _open_error(impl))


#: The cases, in table order.
CASES: list[Case] = [
    Case(
        "breaker_closed",
        "circuit breaker closed, sync",
        120.0,
        {
            "riprap": lambda: _riprap(bare),
            "hand-rolled": lambda: _hand_rolled(bare),
            "pybreaker": lambda: _pybreaker(bare),
            "circuitbreaker": lambda: _circuitbreaker(bare),
            "aiobreaker": lambda: _aiobreaker(bare),
            "purgatory": lambda: _purgatory_sync(bare),
        },
        PEERS,
    ),
    Case(
        "breaker_open",
        "circuit breaker open: cost to reject",
        700.0,
        {impl: _rejecting(impl) for impl in OPEN_BUILDERS},
        PEERS,
    ),
    Case(
        "breaker_window_10",
        "circuit breaker closed, 10 calls in the window",
        None,
        {"riprap": lambda: _riprap_filled(10)},
    ),
    Case(
        "breaker_window_1m",
        "circuit breaker closed, 1,000,000 calls in the window",
        None,
        {"riprap": lambda: _riprap_filled(1_000_000)},
    ),
    Case(
        "breaker_closed_async",
        "circuit breaker closed, async (one await, driven)",
        None,
        {
            "riprap": lambda: drive(_riprap(abare)),
            "await bare": lambda: drive(abare),
            "hand-rolled": lambda: drive(_hand_rolled_async(abare)),
            "circuitbreaker": lambda: drive(_circuitbreaker(abare)),
            "aiobreaker": lambda: drive(_aiobreaker(abare)),
            "purgatory": lambda: drive(_purgatory_async(abare)),
        },
        PEERS,
        target_impl="hand-rolled",
    ),
]
