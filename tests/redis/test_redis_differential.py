"""Differential tests: on the same arrival trace, a limiter on Redis makes exactly the decisions
of the in-process core.

Both limiters run on their own `ManualClock`s, started at the same time; the Redis one uses
`time_source="client"`, so the script sees the same nanoseconds the core sees. Hypothesis
draws the quota, the start time and a trace of `try_acquire(n)`, `acquire(n, timeout)`,
`acquire_async(n, timeout)` and clock steps; after every step the result (or the exception's
type, message and `retry_after`) and the clocks (a wait advances them) must be equal, and so
must the counters at the end. Runs on both backends: the in-process side is the active core.
"""

# The lambdas below are called at once, inside the iteration that defines them.
# ruff: noqa: B023

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from riprap import KeyedRateLimiter, RateLimiter, RateLimitExceeded
from riprap._redis.server import RedisServer
from riprap.testing import ManualClock

NS = 10**9
_NAMES = itertools.count()

# Emission intervals of 0.14-2 s keep every key's TTL far above the real time an example takes
# (the TTL runs on Redis's clock, the trace on the manual one).
RATES = st.sampled_from([0.5, 1.0, 2.0, 3.0, 7.0])
BURSTS = st.sampled_from([None, 1.0, 2.0, 2.5, 5.0])
STARTS = st.sampled_from([0.0, 1.5, 1e6 + 0.123456789, 1.7e9])
N = st.sampled_from([1, 1, 1, 2, 3, 0, 6])
TIMEOUTS = st.sampled_from([None, 0.0, 0.1, 0.5, 1.0, 3.0])
STEPS = st.one_of(
    st.integers(0, 3 * NS),
    st.sampled_from([1, 999_999, 1_000_000, 142_857_143, 333_333_334, 500_000_000]),
)
KEYS = st.sampled_from(["a", "b", 1, b"a"])

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("try"), N, KEYS),
        st.tuples(st.just("acquire"), N, KEYS, TIMEOUTS),
        st.tuples(st.just("async"), N, KEYS, TIMEOUTS),
        st.tuples(st.just("advance"), STEPS),
    ),
    max_size=40,
)


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except (ValueError, TypeError, RateLimitExceeded) as e:
        return ("raise", (type(e).__name__, str(e), getattr(e, "retry_after", None)))


def _run_async(limiter: Any, args: tuple[Any, ...]) -> None:
    async def main() -> None:
        try:
            await limiter.acquire_async(*args)
        finally:
            storage = getattr(limiter, "storage", None)
            if storage is not None:
                await storage.aclose()

    asyncio.run(main())


def replay(
    pair: list[Any], clocks: list[ManualClock], ops: list[Any], keyed: bool
) -> None:
    for op in ops:
        kind = op[0]
        if kind == "advance":
            for c in clocks:
                c.advance(op[1] / NS)
            continue
        n = op[1]
        key = (op[2],) if keyed else ()
        results = []
        for lim in pair:
            if kind == "try":
                results.append(outcome(lambda lim=lim: lim.try_acquire(*key, n)))
            elif kind == "acquire":
                results.append(outcome(lambda lim=lim: lim.acquire(*key, n, op[3])))
            else:
                results.append(
                    outcome(lambda lim=lim: _run_async(lim, (*key, n, op[3])))
                )
        assert results[0] == results[1], op
        assert clocks[0].now_ns() == clocks[1].now_ns(), op
    memory, shared = (lim.get_stats() for lim in pair)
    for field in ("admitted", "rejected", "waited"):
        assert memory[field] == shared[field], field


@given(rate=RATES, burst=BURSTS, start=STARTS, ops=OPS)
def test_limiter_on_redis_decides_as_the_core(
    redis_server: RedisServer, rate: float, burst: float | None, start: float, ops: Any
) -> None:
    clocks = [ManualClock(start), ManualClock(start)]
    name = f"diff-{next(_NAMES)}"
    pair = [
        RateLimiter(rate, burst, name=name, clock=clocks[0]),
        RateLimiter(
            rate,
            burst,
            name=name,
            clock=clocks[1],
            storage=redis_server.url,
            time_source="client",
        ),
    ]
    replay(pair, clocks, ops, keyed=False)


@given(rate=RATES, burst=BURSTS, start=STARTS, ops=OPS)
def test_keyed_limiter_on_redis_decides_as_the_core(
    redis_server: RedisServer, rate: float, burst: float | None, start: float, ops: Any
) -> None:
    clocks = [ManualClock(start), ManualClock(start)]
    name = f"kdiff-{next(_NAMES)}"
    pair = [
        KeyedRateLimiter(rate, burst, name=name, clock=clocks[0]),
        KeyedRateLimiter(
            rate,
            burst,
            name=name,
            clock=clocks[1],
            storage=redis_server.url,
            time_source="client",
        ),
    ]
    replay(pair, clocks, ops, keyed=True)
