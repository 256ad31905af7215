"""Benchmark cases for a stack of policies: retry + breaker + limiter + bulkhead, success path.

The same four layers everywhere, outermost first: a retry of 3 attempts with no wait, a breaker
that opens after 5 consecutive failures for 60 s, a rate limiter whose rate no benchmark loop can
reach (it never waits), and a concurrency limit of 10 that a single caller never fills. The
function is a bare call; nothing fails, so every layer runs its success path once per call.

Implementations:

* riprap: `riprap.Pipeline(RetryPolicy, CircuitBreaker, RateLimiter, Bulkhead)` decorating the
  function.
* hand-rolled: four nested plain-Python wrappers (a `for`/`try` retry loop, a consecutive-failure
  breaker, a token bucket, a counter for the concurrency limit; `async def` wrappers for the
  async row): the least a stack of Python layers can cost, one Python call per layer, with no
  thread safety and no features.
* tenacity+pybreaker+limits (sync) and tenacity+aiobreaker+aiolimiter (async): the common
  choice, one library per layer; none of them limits concurrency, so the stack ends with the
  standard library's semaphore, tried without blocking.
* pyresilience: its one `@resilient(retry=..., circuit_breaker=..., rate_limiter=...,
  bulkhead=...)` decorator, sync and async.
* hyx: its four decorators (`retry`, `consecutive_breaker`, `tokenbucket`, `bulkhead`); hyx is
  async only, so it has no sync row. Its `attempts` counts retries, so 2 of them make 3 attempts.

The async row is measured over a bare awaited call (one `await` of the bare coroutine function,
driven the same way, while an event loop is set as the thread's running loop but never turned:
aiolimiter and hyx look it up), so its number is what the stack adds to an `await`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from .breaker import abare
from .harness import Case, Thunk, bare
from .limiter import HUGE, HandRolledBucket, _drive, _loop

__all__ = [
    "ASYNC",
    "ASYNC_NEEDS",
    "CASES",
    "SYNC",
    "SYNC_NEEDS",
    "HandRolledLimitError",
]

ATTEMPTS = 3
FAILURES = 5  # consecutive failures that open a breaker
OPEN_FOR = 60.0  # seconds a breaker stays open
LIMIT = 10  # calls at once


class HandRolledLimitError(Exception):
    """The hand-rolled stack's rejections (open breaker, no token, no slot)."""


# --- riprap --------------------------------------------------------------------------------------


def _riprap(target: Callable[..., Any]) -> Any:
    import riprap

    return riprap.Pipeline(
        riprap.RetryPolicy(
            max_attempts=ATTEMPTS, base_delay=0.0, max_delay=0.0, jitter=False
        ),
        riprap.CircuitBreaker(
            "bench-pipeline",
            riprap.CircuitBreakerConfig(failure_threshold=FAILURES, timeout=OPEN_FOR),
        ),
        riprap.RateLimiter(HUGE, HUGE),
        riprap.Bulkhead(
            "bench-pipeline", riprap.BulkheadConfig(max_concurrent_calls=LIMIT)
        ),
    )(target)


# --- hand-rolled ---------------------------------------------------------------------------------


def _hand_rolled(target: Thunk) -> Thunk:
    bucket = HandRolledBucket(HUGE, HUGE)
    breaker = [0, 0.0]  # consecutive failures, open until
    active = [0]
    monotonic = time.monotonic

    def bulkhead() -> object:
        if active[0] >= LIMIT:
            raise HandRolledLimitError("bulkhead full")
        active[0] += 1
        try:
            return target()
        finally:
            active[0] -= 1

    def limiter() -> object:
        if not bucket.try_acquire():
            raise HandRolledLimitError("rate limited")
        return bulkhead()

    def circuit() -> object:
        if breaker[1] and monotonic() < breaker[1]:
            raise HandRolledLimitError("circuit open")
        try:
            result = limiter()
        except HandRolledLimitError:
            raise
        except Exception:
            breaker[0] += 1
            if breaker[0] >= FAILURES:
                breaker[1] = monotonic() + OPEN_FOR
            raise
        breaker[0] = 0
        return result

    def retried() -> object:
        for attempt in range(ATTEMPTS):
            try:
                return circuit()
            except ConnectionError:
                if attempt == ATTEMPTS - 1:
                    raise
        return None

    return retried


def _hand_rolled_async(target: Callable[[], Awaitable[Any]]) -> Callable[[], Any]:
    bucket = HandRolledBucket(HUGE, HUGE)
    breaker = [0, 0.0]
    active = [0]
    monotonic = time.monotonic

    async def bulkhead() -> object:
        if active[0] >= LIMIT:
            raise HandRolledLimitError("bulkhead full")
        active[0] += 1
        try:
            return await target()
        finally:
            active[0] -= 1

    async def limiter() -> object:
        if not bucket.try_acquire():
            raise HandRolledLimitError("rate limited")
        return await bulkhead()

    async def circuit() -> object:
        if breaker[1] and monotonic() < breaker[1]:
            raise HandRolledLimitError("circuit open")
        try:
            result = await limiter()
        except HandRolledLimitError:
            raise
        except Exception:
            breaker[0] += 1
            if breaker[0] >= FAILURES:
                breaker[1] = monotonic() + OPEN_FOR
            raise
        breaker[0] = 0
        return result

    async def retried() -> object:
        for attempt in range(ATTEMPTS):
            try:
                return await circuit()
            except ConnectionError:
                if attempt == ATTEMPTS - 1:
                    raise
        return None

    return retried


# --- peers ---------------------------------------------------------------------------------------


def _tenacity(target: Callable[..., Any]) -> Any:
    import tenacity

    return tenacity.retry(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_none(),
        retry=tenacity.retry_if_exception_type(ConnectionError),
        reraise=True,
    )(target)


def _common_sync(target: Thunk) -> Thunk:
    """tenacity, pybreaker, limits and a non-blocking `threading.BoundedSemaphore`."""
    import pybreaker
    from limits import parse, storage, strategies

    sem = threading.BoundedSemaphore(LIMIT)

    def bulkhead() -> object:
        if not sem.acquire(blocking=False):
            raise HandRolledLimitError("bulkhead full")
        try:
            return target()
        finally:
            sem.release()

    limiter = strategies.FixedWindowRateLimiter(storage.MemoryStorage())
    item = parse(f"{HUGE}/second")

    def limited() -> object:
        if not limiter.hit(item, "bench"):
            raise HandRolledLimitError("rate limited")
        return bulkhead()

    breaker = pybreaker.CircuitBreaker(fail_max=FAILURES, reset_timeout=OPEN_FOR)
    return _tenacity(breaker(limited))  # type: ignore[no-any-return]


def _common_async(target: Callable[[], Awaitable[Any]]) -> Callable[[], Any]:
    """tenacity, aiobreaker, aiolimiter and a non-blocking `asyncio.Semaphore`."""
    from datetime import timedelta

    import aiobreaker  # type: ignore[import-untyped]
    from aiolimiter import AsyncLimiter

    sem = asyncio.Semaphore(LIMIT)

    async def bulkhead() -> object:
        if sem.locked():
            raise HandRolledLimitError("bulkhead full")
        async with sem:
            return await target()

    limiter = AsyncLimiter(HUGE, 1)

    async def limited() -> object:
        await limiter.acquire()
        return await bulkhead()

    breaker = aiobreaker.CircuitBreaker(
        fail_max=FAILURES, timeout_duration=timedelta(seconds=OPEN_FOR)
    )
    return _tenacity(breaker(limited))  # type: ignore[no-any-return]


def _pyresilience(target: Callable[..., Any]) -> Any:
    import pyresilience as pr

    return pr.resilient(
        retry=pr.RetryConfig(
            max_attempts=ATTEMPTS,
            delay=0.0,
            max_delay=0.0,
            jitter=False,
            retry_on=(ConnectionError,),
        ),
        circuit_breaker=pr.CircuitBreakerConfig(
            failure_threshold=FAILURES, recovery_timeout=OPEN_FOR
        ),
        rate_limiter=pr.RateLimiterConfig(max_calls=HUGE, period=1.0),
        bulkhead=pr.BulkheadConfig(max_concurrent=LIMIT),
    )(target)


def _hyx(target: Callable[[], Awaitable[Any]]) -> Callable[[], Any]:
    from hyx.bulkhead import bulkhead
    from hyx.circuitbreaker import consecutive_breaker
    from hyx.ratelimit import tokenbucket
    from hyx.retry import retry

    stack: Any = bulkhead(max_concurrency=LIMIT, max_capacity=LIMIT)(cast(Any, target))
    # hyx's token bucket keeps the running loop for its clock: build it while the loop the
    # async cases are driven under is set.
    asyncio.events._set_running_loop(_loop())
    try:
        stack = tokenbucket(HUGE, 1.0)(stack)
    finally:
        asyncio.events._set_running_loop(None)
    stack = consecutive_breaker(
        exceptions=Exception,
        failure_threshold=FAILURES,
        recovery_time_secs=OPEN_FOR,
    )(stack)
    return retry(on=ConnectionError, attempts=ATTEMPTS - 1, backoff=0.0)(stack)


COMMON_SYNC = "tenacity+pybreaker+limits"
COMMON_ASYNC = "tenacity+aiobreaker+aiolimiter"

#: Each implementation's stack around a sync function, and the modules it needs.
SYNC: dict[str, Callable[[Callable[..., Any]], Any]] = {
    "riprap": _riprap,
    "hand-rolled": _hand_rolled,
    COMMON_SYNC: _common_sync,
    "pyresilience": _pyresilience,
}
SYNC_NEEDS: dict[str, str | tuple[str, ...]] = {
    COMMON_SYNC: ("tenacity", "pybreaker", "limits"),
    "pyresilience": "pyresilience",
}

#: Each implementation's stack around a coroutine function, and the modules it needs.
ASYNC: dict[str, Callable[[Callable[..., Any]], Any]] = {
    "riprap": _riprap,
    "hand-rolled": _hand_rolled_async,
    COMMON_ASYNC: _common_async,
    "pyresilience": _pyresilience,
    "hyx": _hyx,
}
ASYNC_NEEDS: dict[str, str | tuple[str, ...]] = {
    COMMON_ASYNC: ("tenacity", "aiobreaker", "aiolimiter"),
    "pyresilience": "pyresilience",
    "hyx": "hyx",
}


def _sync_case(stack: Callable[[Callable[..., Any]], Any]) -> Callable[[], Thunk]:
    return lambda: stack(bare)


def _async_case(stack: Callable[[Callable[..., Any]], Any]) -> Callable[[], Thunk]:
    return lambda: _drive(stack(abare))


#: The cases, in table order.
CASES: list[Case] = [
    Case(
        "pipeline_sync",
        "retry+breaker+limiter+bulkhead, success, sync",
        150.0,
        {impl: _sync_case(stack) for impl, stack in SYNC.items()},
        SYNC_NEEDS,
    ),
    Case(
        "pipeline_async",
        "the same stack, async, over a bare awaited call",
        400.0,
        {impl: _async_case(stack) for impl, stack in ASYNC.items()},
        ASYNC_NEEDS,
        baselines=dict.fromkeys(ASYNC, lambda: _drive(abare)),
    ),
]
