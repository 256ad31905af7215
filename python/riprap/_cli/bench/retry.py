"""Benchmark cases for retry: riprap vs a hand-rolled loop, tenacity, stamina, backoff.

The async row is one `await` of a decorated coroutine function, driven to completion without an
event loop (none of them suspends on success); "await bare" is the cost of driving the bare
coroutine alone, included in every number of that row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .breaker import abare, drive
from .harness import Case, Thunk, bare

__all__ = ["CASES", "flaky"]


def flaky() -> Thunk:
    """A function that fails twice with ConnectionError, then succeeds, over and over."""
    count = [0]

    def flaky() -> int:
        count[0] += 1
        if count[0] % 3:
            raise ConnectionError("connection reset")
        return 1

    return flaky


# --- implementations ---------------------------------------------------------------------------


def _riprap(target: Callable[..., Any]) -> Any:
    import riprap

    policy = riprap.RetryPolicy(
        max_attempts=3, base_delay=0.0, max_delay=0.0, jitter=False
    )
    return riprap.retry(policy)(target)


def _hand_rolled(target: Thunk) -> Thunk:
    def retried() -> object:
        for attempt in range(3):
            try:
                return target()
            except ConnectionError:
                if attempt == 2:
                    raise
        return None

    return retried


def _hand_rolled_async(target: Callable[[], Awaitable[Any]]) -> Callable[[], Any]:
    async def retried() -> object:
        for attempt in range(3):
            try:
                return await target()
            except ConnectionError:
                if attempt == 2:
                    raise
        return None

    return retried


def _tenacity(target: Callable[..., Any]) -> Any:
    import tenacity

    return tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_none(),
        retry=tenacity.retry_if_exception_type(ConnectionError),
        reraise=True,
    )(target)


def _stamina(target: Callable[..., Any]) -> Any:
    import stamina

    return stamina.retry(
        on=ConnectionError, attempts=3, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0
    )(target)


def _backoff(target: Callable[..., Any]) -> Any:
    import backoff

    return backoff.on_exception(
        backoff.constant, ConnectionError, max_tries=3, interval=0, jitter=None
    )(target)


PEERS = {"tenacity": "tenacity", "stamina": "stamina", "backoff": "backoff"}

#: The cases, in table order.
CASES: list[Case] = [
    Case(
        "retry_success",
        "retry decorator, success, sync",
        150.0,
        {
            "riprap": lambda: _riprap(bare),
            "hand-rolled": lambda: _hand_rolled(bare),
            "tenacity": lambda: _tenacity(bare),
            "stamina": lambda: _stamina(bare),
            "backoff": lambda: _backoff(bare),
        },
        PEERS,
    ),
    Case(
        "retry_fails_twice",
        "retry, fails twice then succeeds, zero wait, sync",
        2000.0,
        {
            "riprap": lambda: _riprap(flaky()),
            "hand-rolled": lambda: _hand_rolled(flaky()),
            "tenacity": lambda: _tenacity(flaky()),
            "stamina": lambda: _stamina(flaky()),
            "backoff": lambda: _backoff(flaky()),
        },
        PEERS,
    ),
    Case(
        "retry_success_async",
        "retry decorator, success, async (one await, driven)",
        None,
        {
            "riprap": lambda: drive(_riprap(abare)),
            "await bare": lambda: drive(abare),
            "hand-rolled": lambda: drive(_hand_rolled_async(abare)),
            "tenacity": lambda: drive(_tenacity(abare)),
            "stamina": lambda: drive(_stamina(abare)),
            "backoff": lambda: drive(_backoff(abare)),
        },
        PEERS,
        target_impl="hand-rolled",
    ),
]
