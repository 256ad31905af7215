"""The calls `make bench-check` counts, run under callgrind by `check.py`.

    python workload.py CALLS PATH [PATH ...]

For each path: build it, warm it up, then run it 0 times and CALLS times. Each run sits
between two markers: entering libc's `getppid` (`os.getppid()`) zeroes callgrind's counters and
entering `getpgrp` (`os.getpgrp()`) dumps them, so every run becomes one numbered part of the
profile holding only that run's instructions. The path's cost per call is
`(Ir(CALLS) - Ir(0)) / CALLS`: what the markers and the run's set-up cost is in both and cancels;
the Python loop around each call stays in (the `bare` paths measure it). Prints, as JSON, the
`[path, calls]` of every part in order.

Loops use `itertools.repeat(None, n)` (no int object per iteration) and run inside functions
(fast locals), and the garbage collector is emptied and frozen before each run: a full
collection of everything riprap imported, landing in one run and not in another, would swamp
the few hundred instructions being counted.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import os
import sys
import types
from collections.abc import Awaitable, Callable
from typing import Any

import riprap

Marker = Callable[[], object]

#: Warm-up calls before counting (the adaptive interpreter specialises a call site after a few
#: runs; first calls fill caches).
WARMUP = 200
#: Existing keys the keyed paths cycle over.
KEYS = list(range(1000))


def _f() -> int:
    return 1


def _f_key(key: object) -> int:
    return 1


def _f_raise() -> int:
    raise ValueError("no")


async def _af() -> int:
    return 1


def _flaky() -> Callable[[], int]:
    """Fails twice with ConnectionError, then succeeds, over and over."""
    count = [0]

    def flaky() -> int:
        count[0] += 1
        if count[0] % 3:
            raise ConnectionError("connection reset")
        return 1

    return flaky


def _hand_async(target: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    """What a hand-written async decorator costs: an `async def` with a try/except."""

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await target(*args, **kwargs)
        except Exception:
            raise

    return wrapper


def _zero_delay() -> riprap.RetryPolicy:
    return riprap.RetryPolicy(
        max_attempts=3, base_delay=0.0, max_delay=0.0, jitter=False
    )


def _open_breaker() -> Callable[[], int]:
    breaker = riprap.CircuitBreaker("check-open")
    breaker.force_open()
    return breaker(_f)


def _keyed_table() -> riprap.KeyedRateLimiter:
    keyed = riprap.KeyedRateLimiter(rate=1e9, burst=1e9)
    for key in KEYS:
        keyed.try_acquire(key)
    return keyed


# --- the loops --------------------------------------------------------------------------------
# Each takes the markers as arguments: the counted runs pass `os.getppid`/`os.getpgrp`, the
# warm-up passes `_nothing`, so it warms up the very loop that is counted.


def _nothing() -> None:
    return None


def _calls(w: Callable[[], object], n: int, start: Marker, stop: Marker) -> None:
    start()
    for _ in itertools.repeat(None, n):
        w()
    stop()


def _caught(w: Callable[[], object], n: int, start: Marker, stop: Marker) -> None:
    start()
    for _ in itertools.repeat(None, n):
        try:  # noqa: SIM105 - contextlib.suppress would add its own calls to the count
            w()
        except Exception:
            pass
    stop()


def _keyed(w: Callable[[object], object], n: int, start: Marker, stop: Marker) -> None:
    keys = itertools.islice(itertools.cycle(KEYS), n)
    start()
    for key in keys:
        w(key)
    stop()


def _hand_sync(target: Callable[..., Any]) -> Callable[..., Any]:
    """What a hand-written sync decorator costs: a `def` with a try/except."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return target(*args, **kwargs)
        except Exception:
            raise

    return wrapper


def _nest(wrap: Callable[[Any], Any], target: Any) -> Any:
    """Four hand-written layers: the stack a pipeline replaces."""
    for _ in range(4):
        target = wrap(target)
    return target


def _bulkhead() -> riprap.Bulkhead:
    return riprap.Bulkhead("check", riprap.BulkheadConfig(max_concurrent_calls=100))


def _pipeline() -> riprap.Pipeline:
    """Retry, breaker, limiter and bulkhead: the stack of the pipeline's targets."""
    return riprap.Pipeline(
        riprap.RetryPolicy(max_attempts=3),
        riprap.CircuitBreaker("check-pipeline"),
        riprap.RateLimiter(rate=1e9, burst=1e9),
        _bulkhead(),
    )


async def _awaits(
    w: Callable[[], Awaitable[object]], n: int, start: Marker, stop: Marker
) -> None:
    start()
    for _ in itertools.repeat(None, n):
        await w()
    stop()


#: path -> (loop, build). The `bare` and `async_bare`/`async_hand` paths are references.
PATHS: dict[str, tuple[Callable[..., Any], Callable[[], Callable[..., Any]]]] = {
    "bare": (_calls, lambda: _f),
    "bare_raise": (_caught, lambda: _f_raise),
    "retry_success": (_calls, lambda: riprap.retry(max_attempts=3)(_f)),
    "retry_fails_twice": (_calls, lambda: riprap.retry(_zero_delay())(_flaky())),
    "breaker_closed": (_calls, lambda: riprap.CircuitBreaker("check")(_f)),
    "breaker_reject": (_caught, _open_breaker),
    "try_acquire": (
        _calls,
        lambda: riprap.RateLimiter(rate=1e9, burst=1e9).try_acquire,
    ),
    "limited_call": (_calls, lambda: riprap.RateLimiter(rate=1e9, burst=1e9)(_f)),
    "bare_key": (_keyed, lambda: _f_key),
    "keyed_check": (_keyed, lambda: _keyed_table().try_acquire),
    "keyed_call": (_keyed, lambda: _keyed_table()(_f_key, key=lambda key: key)),
    "async_bare": (_awaits, lambda: _af),
    "async_hand": (_awaits, lambda: _hand_async(_af)),
    "async_breaker": (_awaits, lambda: riprap.CircuitBreaker("check-async")(_af)),
    "async_retry": (_awaits, lambda: riprap.retry(max_attempts=3)(_af)),
    "async_limiter": (_awaits, lambda: riprap.RateLimiter(rate=1e9, burst=1e9)(_af)),
    "async_bulkhead": (_awaits, lambda: _bulkhead()(_af)),
    "pipeline_sync": (_calls, lambda: _pipeline()(_f)),
    "pipeline_async": (_awaits, lambda: _pipeline()(_af)),
    "hand4_sync": (_calls, lambda: _nest(_hand_sync, _f)),
    "hand4_async": (_awaits, lambda: _nest(_hand_async, _af)),
}


def _fresh(loop: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of `loop` with its own code object.

    The adaptive interpreter specialises each call site for what it last saw; a loop shared by
    every path would start each path in the state the previous one left.
    """
    return types.FunctionType(loop.__code__.replace(), loop.__globals__, loop.__name__)


def main(argv: list[str]) -> None:
    calls, paths = int(argv[0]), argv[1:]
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise SystemExit(
            f"unknown paths: {', '.join(unknown)}; known: {', '.join(PATHS)}"
        )
    # A log record costs what the logging module makes it cost; count riprap's own work.
    logging.getLogger("riprap").setLevel(logging.ERROR)
    aio = asyncio.new_event_loop()
    parts: list[tuple[str, int]] = []
    for path in paths:
        how, build = PATHS[path]
        loop, w = _fresh(how), build()

        def run(n: int, start: Marker, stop: Marker) -> None:
            result = loop(w, n, start, stop)  # noqa: B023 - used before the next iteration
            if asyncio.iscoroutine(result):
                aio.run_until_complete(result)

        run(WARMUP, _nothing, _nothing)
        for n in (0, calls):
            gc.collect()
            gc.freeze()
            run(n, os.getppid, os.getpgrp)
            parts.append((path, n))
    aio.close()
    print(json.dumps(parts))


if __name__ == "__main__":
    main(sys.argv[1:])
