"""Benchmark cases for the rate limiters.

riprap against a hand-rolled token bucket, limits (fixed, moving and sliding window counter),
pyrate-limiter and aiolimiter (async). Every limiter is configured so the measured calls are
admitted (the cost of saying yes). The keyed cases check keys among 1,000,000 live ones
(uniformly at random, or cycling over 1,000 hot ones), measured against the same key stream
passed to a no-op, so choosing the key is not counted; `keyed_bytes_per_key` measures the
resident memory the keys take (RSS before and after inserting them).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import gc
import itertools
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .harness import Case, Thunk, bare

__all__ = ["CASES", "KEYS", "PEER_KEYS", "keyed_bytes_per_key", "rss_bytes"]

#: Live keys in the riprap and hand-rolled keyed cases; limits gets 100,000 (it takes 16-33 µs
#: and ~360 B per new key, so a million would take 16-33 s and ~360 MB just to set up).
KEYS = 1_000_000
PEER_KEYS = 100_000
HUGE = 1_000_000_000  # a rate no benchmark loop can reach


def rss_bytes() -> int:
    """Resident set size of this process (Linux), in bytes."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _bytes_per_key_here(n: int) -> float:
    import riprap

    gc.collect()
    before = rss_bytes()
    limiter = riprap.KeyedRateLimiter(1000.0, 1000.0, max_keys=2 * n)
    check = limiter.try_acquire
    for key in range(n):
        check(key)
    gc.collect()
    used = rss_bytes() - before
    assert len(limiter) == n
    return used / n


def keyed_bytes_per_key(n: int = KEYS) -> float:
    """Resident bytes per key of a riprap KeyedRateLimiter holding `n` live int keys.

    Measured in a fresh interpreter (on the active backend): in a process that has already
    freed memory, the allocator reuses it and RSS would not grow.
    """
    import riprap

    code = (
        "from riprap._cli.bench.limiter import _bytes_per_key_here; "
        f"print(_bytes_per_key_here({n}))"
    )
    env = dict(os.environ, RIPRAP_BACKEND=riprap.backend())
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip())


# --- hand-rolled -------------------------------------------------------------------------------


class HandRolledBucket:
    """The pure-Python token bucket people write: the bar a compiled limiter must beat."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.last = burst, time.monotonic()

    def try_acquire(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _hand_rolled_keyed(n: int) -> Callable[[int], bool]:
    state: dict[int, list[float]] = {}
    rate, burst = 1000.0, 1000.0

    def check(key: int) -> bool:
        now = time.monotonic()
        s = state.get(key)
        if s is None:
            state[key] = [burst - 1, now]
            return True
        s[0] = min(burst, s[0] + (now - s[1]) * rate)
        s[1] = now
        if s[0] >= 1:
            s[0] -= 1
            return True
        return False

    for key in range(n):
        check(key)
    return check


@functools.cache
def _shuffled(n: int) -> list[int]:
    """The keys 0..n-1 in one fixed random order, built once (a million take ~0.5 s)."""
    keys = list(range(n))
    random.Random(1).shuffle(keys)
    return keys


def _key_stream(n: int, hot: int | None = None) -> Callable[[], int]:
    """Keys drawn uniformly from all `n`, or cycling over `hot` of them."""
    keys = _shuffled(n)
    return itertools.cycle(keys[:hot] if hot else keys).__next__


def _keyed_thunk(
    check: Callable[[int], object], n: int, hot: int | None = None
) -> Thunk:
    """Check keys drawn uniformly from all `n`, or cycling over `hot` of them.

    Real traffic is skewed (a few clients send most requests), so both are worth knowing.
    """
    next_key = _key_stream(n, hot)
    return lambda: check(next_key())


def _no_check(key: object) -> bool:
    return True


def _key_baselines(hot: int | None) -> dict[str, Callable[[], Thunk]]:
    """Baselines for the keyed cases: the same key stream, passed to a no-op check.

    The harness's own work per call (a lambda, `itertools.cycle`, and a cache miss on a randomly
    chosen int object among a million) is then subtracted, and only the check is counted.
    """
    return {
        "riprap": lambda: _keyed_thunk(_no_check, KEYS, hot),
        "hand-rolled": lambda: _keyed_thunk(_no_check, KEYS, hot),
        "limits fixed": lambda: _keyed_thunk(_no_check, PEER_KEYS, hot),
    }


def _key_raw_baselines(hot: int | None) -> dict[str, Callable[[], Thunk]]:
    """Raw baselines for the keyed cases: the same key stream with no call at all.

    The raw cost is then the whole `check(key)` call.
    """
    return {
        "riprap": lambda: _key_stream(KEYS, hot),
        "hand-rolled": lambda: _key_stream(KEYS, hot),
        "limits fixed": lambda: _key_stream(PEER_KEYS, hot),
    }


# --- riprap --------------------------------------------------------------------------------------


def _riprap_try() -> Thunk:
    import riprap

    return riprap.RateLimiter(HUGE, HUGE).try_acquire


def _riprap_decorated() -> Thunk:
    import riprap

    return riprap.RateLimiter(HUGE, HUGE)(bare)


def _riprap_keyed(hot: int | None = None) -> Thunk:
    import riprap

    # max_keys above KEYS, so all 1,000,000 stay live (none is evicted).
    limiter = riprap.KeyedRateLimiter(1000.0, 1000.0, max_keys=2 * KEYS)
    check = limiter.try_acquire
    for key in range(KEYS):
        check(key)
    return _keyed_thunk(check, KEYS, hot)


# --- peers ---------------------------------------------------------------------------------------


def _limits(strategy: str) -> Callable[[str], Callable[[], bool]]:
    from limits import parse, storage, strategies

    cls: Any = {
        "fixed": strategies.FixedWindowRateLimiter,
        "moving": strategies.MovingWindowRateLimiter,
        "sliding": strategies.SlidingWindowCounterRateLimiter,
    }[strategy]
    limiter = cls(storage.MemoryStorage())
    item = parse(f"{HUGE}/second")
    return lambda key: lambda: limiter.hit(item, key)


def _limits_keyed(hot: int | None = None) -> Thunk:
    from limits import parse, storage, strategies

    limiter = strategies.FixedWindowRateLimiter(storage.MemoryStorage())
    item = parse("1000/second")

    def check(key: int) -> bool:
        return limiter.hit(item, str(key))

    for key in range(PEER_KEYS):
        check(key)
    return _keyed_thunk(check, PEER_KEYS, hot)


def _pyrate(kind: str) -> Thunk:
    from pyrate_limiter import Duration, Limiter, Rate
    from pyrate_limiter.limiter_factory import create_token_bucket_limiter

    if kind == "token":
        limiter = create_token_bucket_limiter(HUGE, Duration.SECOND)
    else:
        limiter = Limiter(Rate(HUGE, Duration.SECOND))
    return lambda: limiter.try_acquire("k", blocking=False)


def _decorate(check: Callable[[], object]) -> Thunk:
    def limited() -> int:
        if not check():
            raise RuntimeError("limited")
        return bare()

    return limited


# --- async (driven without an event loop turn: every call here completes without waiting) ------


async def abare() -> int:
    """The async function every async case wraps."""
    return 1


_LOOP: list[asyncio.AbstractEventLoop] = []


def _loop() -> asyncio.AbstractEventLoop:
    """One event loop for every async case, never run, closed when the process exits."""
    if not _LOOP:
        _LOOP.append(asyncio.new_event_loop())
        atexit.register(_LOOP[0].close)
    return _LOOP[0]


def _drive(factory: Callable[[], Coroutine[Any, Any, object]]) -> Thunk:
    loop = _loop()

    def thunk() -> object:
        # A running loop is set (aiolimiter asks for one) but never turned.
        asyncio.events._set_running_loop(loop)
        coro = factory()
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value
        finally:
            asyncio.events._set_running_loop(None)
        coro.close()
        raise RuntimeError("an admitted call suspended")

    return thunk


def _riprap_async() -> Thunk:
    import riprap

    return _drive(riprap.RateLimiter(HUGE, HUGE)(abare))


def _aiolimiter() -> Thunk:
    from aiolimiter import AsyncLimiter

    limiter = AsyncLimiter(HUGE, 1)

    async def limited() -> int:
        await limiter.acquire()
        return await abare()

    return _drive(limited)


def _hand_rolled_async() -> Thunk:
    bucket = HandRolledBucket(HUGE, HUGE)

    async def limited() -> int:
        if not bucket.try_acquire():
            raise RuntimeError("limited")
        return await abare()

    return _drive(limited)


LIMITS = {
    "limits fixed": "limits",
    "limits moving": "limits",
    "limits sliding": "limits",
}

#: The cases, in table order.
CASES: list[Case] = [
    Case(
        "limiter_try_acquire",
        "rate limiter try_acquire",
        80.0,
        {
            "riprap": _riprap_try,
            "hand-rolled": lambda: HandRolledBucket(HUGE, HUGE).try_acquire,
            "limits fixed": lambda: _limits("fixed")("k"),
            "limits moving": lambda: _limits("moving")("k"),
            "limits sliding": lambda: _limits("sliding")("k"),
            "pyrate-limiter": lambda: _pyrate("memory"),
            "pyrate-limiter token": lambda: _pyrate("token"),
        },
        {
            **LIMITS,
            "pyrate-limiter": "pyrate_limiter",
            "pyrate-limiter token": "pyrate_limiter",
        },
        method=True,
    ),
    Case(
        "limiter_decorated",
        "rate-limited function (decorator), sync",
        None,
        {
            "riprap": _riprap_decorated,
            "hand-rolled": lambda: _decorate(HandRolledBucket(HUGE, HUGE).try_acquire),
            "limits fixed": lambda: _decorate(_limits("fixed")("k")),
        },
        {"limits fixed": "limits"},
    ),
    Case(
        "limiter_async",
        "rate-limited async function, awaited (incl. the bare await)",
        None,
        {
            "riprap": _riprap_async,
            "hand-rolled": _hand_rolled_async,
            "aiolimiter": _aiolimiter,
            "await af() alone": lambda: _drive(abare),
        },
        {"aiolimiter": "aiolimiter"},
        target_impl="hand-rolled",
    ),
    Case(
        "keyed_1m",
        "keyed limiter, uniform random checks over 1M live int keys (limits: 100k)",
        200.0,
        {
            "riprap": _riprap_keyed,
            "hand-rolled": lambda: _keyed_thunk(_hand_rolled_keyed(KEYS), KEYS),
            "limits fixed": _limits_keyed,
        },
        {"limits fixed": "limits"},
        _key_baselines(None),
        method=True,
        raw_baselines=_key_raw_baselines(None),
    ),
    Case(
        "keyed_1m_hot",
        "keyed limiter, 1,000 hot keys among 1M live int keys (limits: 100k)",
        200.0,
        {
            "riprap": lambda: _riprap_keyed(hot=1000),
            "hand-rolled": lambda: _keyed_thunk(_hand_rolled_keyed(KEYS), KEYS, 1000),
            "limits fixed": lambda: _limits_keyed(hot=1000),
        },
        {"limits fixed": "limits"},
        _key_baselines(1000),
        method=True,
        raw_baselines=_key_raw_baselines(1000),
    ),
]
