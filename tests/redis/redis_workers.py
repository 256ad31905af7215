"""Code that runs in the worker processes of test_redis_processes.py.

Each function is a process target: it builds its own riprap objects on the shared Redis (on the
backend it inherits through RIPRAP_BACKEND) and reports through a pipe or a queue.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import riprap
from riprap import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    KeyedRateLimiter,
    RateLimiter,
)


def hammer(
    url: str, name: str, rate: float, burst: float, n: int, start: Any, out: Any
) -> None:
    """`n` try_acquire calls as fast as possible, after the start barrier; reports admitted."""
    limiter = RateLimiter(rate, burst, name=name, storage=url)
    limiter.storage.sync_client().ping()  # connect before the race starts
    out.put("ready")
    start.wait()
    admitted = sum(limiter.try_acquire() for _ in range(n))
    out.put((riprap.backend(), admitted, limiter.get_stats()["storage_errors"]))


def breaker_actor(
    conn: Any, url: str, name: str, config: dict[str, Any], **kw: Any
) -> None:
    """A breaker driven by commands from the parent: one reply per command."""
    breaker = CircuitBreaker(name, CircuitBreakerConfig(**config), storage=url, **kw)
    held: list[Any] = []
    while True:
        cmd = conn.recv()
        if cmd == "stop":
            conn.send("stopped")
            return
        try:
            if cmd == "ok":
                with breaker:
                    pass
                reply: Any = "admitted"
            elif cmd == "fail":
                with contextlib.suppress(ValueError), breaker:
                    raise ValueError("down")
                reply = "admitted"
            elif cmd == "hold":
                held.append(breaker._engine.acquire())
                reply = "admitted"
            elif cmd == "state":
                reply = breaker.state.value
            elif cmd == "stats":
                reply = dict(breaker.get_stats())
            else:
                reply = f"unknown command {cmd!r}"
        except CircuitOpenError as e:
            reply = ("rejected", e.retry_after)
        conn.send(reply)


def churn(url: str, seed: int, ready: Any) -> None:
    """Every kind of write riprap makes, in a loop, until the parent kills this process."""
    rng = random.Random(seed)
    limiter = RateLimiter(50, 5, name="churn", storage=url)
    keyed = KeyedRateLimiter(5, 2, name="churn-keyed", storage=url)
    breaker = CircuitBreaker(
        "churn-breaker",
        CircuitBreakerConfig(failure_threshold=3, timeout=0.05, monitoring_window=1.0),
        storage=url,
    )
    quorum = CircuitBreaker(
        "churn-quorum",
        CircuitBreakerConfig(failure_threshold=2, timeout=0.05),
        storage=url,
        shared="quorum",
    )
    ready.set()
    while True:
        limiter.try_acquire()
        with contextlib.suppress(riprap.RateLimitExceeded):
            limiter.acquire(timeout=0.01)
        keyed.try_acquire(rng.randrange(50))
        for b in (breaker, quorum):
            with contextlib.suppress(ValueError, CircuitOpenError), b:
                if rng.random() < 0.5:
                    raise ValueError("flaky")
