"""Benchmark cases on Redis: riprap's shared limiter and breaker, limits and pybreaker.

Every call here is a round trip to a throwaway `redis-server` on 127.0.0.1 (started on first
use, stopped at exit), so the baseline is not a bare call but one raw `EVALSHA` of a trivial
script (`return 1`) through redis-py on the same server: the numbers are what each library adds
to the round trip it cannot avoid. The cases exist only when `redis-server` is on PATH and the
redis package is installed.

`decisions_per_second` is the other view, for the README: decisions per second from one client,
sync and async, next to the raw EVALSHA rate, measured in interleaved blocks.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .harness import Case, Thunk, bare, has

__all__ = ["CASES", "available", "decisions_per_second", "server_url"]

HUGE = 1_000_000_000  # a rate no benchmark loop can reach: every decision is "admit"
_NAMES = itertools.count()
_server: Any = None


def available() -> bool:
    """Whether the Redis cases can run here."""
    from riprap._redis.server import find_redis_server

    return has("redis") and find_redis_server() is not None


def server_url() -> str:
    """The URL of this process's benchmark server (started on first use)."""
    global _server
    if _server is None:
        from riprap._redis.server import RedisServer

        _server = RedisServer().start()
        atexit.register(_server.close)
    return str(_server.url)


def _name(kind: str) -> str:
    return f"bench-{kind}-{next(_NAMES)}"


def _client() -> Any:
    import redis

    return redis.Redis.from_url(
        server_url(), socket_timeout=5.0, socket_connect_timeout=5.0
    )


def _raw() -> Thunk:
    """One EVALSHA of `return 1` through redis-py: the round trip every library pays."""
    client = _client()
    sha = client.script_load("return 1")
    return lambda: client.evalsha(sha, 0)


def _riprap_try() -> Thunk:
    import riprap

    limiter = riprap.RateLimiter(HUGE, HUGE, name=_name("try"), storage=server_url())
    return limiter.try_acquire


def _riprap_breaker() -> Thunk:
    import riprap

    breaker = riprap.CircuitBreaker(_name("breaker"), storage=server_url())
    return breaker(bare)


def _limits(strategy: str) -> Thunk:
    from limits import parse, storage, strategies

    cls: Any = {
        "fixed": strategies.FixedWindowRateLimiter,
        "moving": strategies.MovingWindowRateLimiter,
        "sliding": strategies.SlidingWindowCounterRateLimiter,
    }[strategy]
    limiter = cls(storage.RedisStorage(server_url()))
    item = parse(f"{HUGE}/second")
    key = _name(strategy)
    return lambda: limiter.hit(item, key)


def _pybreaker() -> Thunk:
    import pybreaker

    store = pybreaker.CircuitRedisStorage(
        pybreaker.STATE_CLOSED, _client(), namespace=_name("pybreaker")
    )
    breaker = pybreaker.CircuitBreaker(state_storage=store)
    return lambda: breaker.call(bare)


def _cases() -> list[Case]:
    if not available():
        return []
    limiters = {
        "riprap": _riprap_try,
        "limits fixed": lambda: _limits("fixed"),
        "limits moving": lambda: _limits("moving"),
        "limits sliding": lambda: _limits("sliding"),
    }
    breakers = {"riprap": _riprap_breaker, "pybreaker": _pybreaker}
    raw_try = dict.fromkeys(limiters, _raw)
    raw_breaker = dict.fromkeys(breakers, _raw)
    return [
        Case(
            "redis_limiter",
            "limiter on Redis, added to one raw EVALSHA",
            None,
            limiters,
            needs={k: "limits" for k in limiters if k != "riprap"},
            baselines=raw_try,
        ),
        Case(
            "redis_breaker",
            "@breaker on Redis (2 scripts), added to one raw EVALSHA",
            None,
            breakers,
            needs={"pybreaker": "pybreaker"},
            baselines=raw_breaker,
        ),
    ]


CASES = _cases()


# -- decisions per second ------------------------------------------------------------------------


def _rates(
    fns: dict[str, Callable[[], object]], *, block: int, rounds: int
) -> dict[str, float]:
    """Median calls per second of each function, timed in interleaved blocks."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(block):
                fn()
            samples[name].append(block / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in samples.items()}


async def _arates(
    fns: dict[str, Callable[[], Awaitable[object]]], *, block: int, rounds: int
) -> dict[str, float]:
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(block):
                await fn()
            samples[name].append(block / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in samples.items()}


def decisions_per_second(
    *, block: int = 100, rounds: int = 200, peers: bool = True
) -> dict[str, dict[str, float]]:
    """Decisions per second from one client: {"sync": {...}, "async": {...}}.

    Rows: the raw EVALSHA of `return 1` (the ceiling), riprap's `try_acquire` /
    `acquire_async` on server time, and, with `peers`, limits' three strategies on its Redis
    storage (its async storage through redis-py). Each row is the median of `rounds` blocks of
    `block` calls, interleaved so that load on the machine hits every row alike.
    """
    import riprap

    client = _client()
    sha = client.script_load("return 1")
    limiter = riprap.RateLimiter(HUGE, HUGE, name=_name("dps"), storage=server_url())
    sync: dict[str, Callable[[], object]] = {
        "raw EVALSHA (return 1)": lambda: client.evalsha(sha, 0),
        "riprap try_acquire": limiter.try_acquire,
    }
    if peers and has("limits"):
        for strategy in ("fixed", "moving", "sliding"):
            sync[f"limits {strategy} window"] = _limits(strategy)
    result = {"sync": _rates(sync, block=block, rounds=rounds)}
    result["async"] = asyncio.run(_async_rates(limiter, peers, block, rounds // 2))
    client.close()
    return result


async def _async_rates(
    limiter: Any, peers: bool, block: int, rounds: int
) -> dict[str, float]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(
        server_url(), socket_timeout=5.0, socket_connect_timeout=5.0
    )
    sha = await client.script_load("return 1")
    fns: dict[str, Callable[[], Awaitable[object]]] = {
        "raw EVALSHA (return 1)": lambda: client.evalsha(sha, 0),
        "riprap acquire_async": limiter.acquire_async,
    }
    storage: Any = None
    if peers and has("limits"):
        from limits import aio, parse

        storage = aio.storage.RedisStorage(
            server_url().replace("redis://", "async+redis://"), implementation="redispy"
        )
        item = parse(f"{HUGE}/second")
        for strategy, cls in (
            ("fixed", aio.strategies.FixedWindowRateLimiter),
            ("moving", aio.strategies.MovingWindowRateLimiter),
            ("sliding", aio.strategies.SlidingWindowCounterRateLimiter),
        ):
            peer = cls(storage)
            key = _name(strategy)
            fns[f"limits {strategy} window"] = functools.partial(peer.hit, item, key)
    try:
        return await _arates(fns, block=block, rounds=rounds)
    finally:
        await client.aclose()
        await limiter.storage.aclose()
        if storage is not None:  # limits' async client (redis-py, under its bridge)
            await storage.bridge.storage.aclose()
