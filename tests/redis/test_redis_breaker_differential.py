"""Differential test: a breaker on Redis (shared="state") follows the in-process breaker's rules.

One breaker of each kind, each on its own `ManualClock` (the Redis one with
`time_source="client"`), replays the same trace: calls that succeed, fail, are ignored or are
slow; permits held across other calls and returned later (as a success, a failure, or a
release); clock steps; `reset`, `force_open` and state reads. Times are whole microseconds
(the Redis breaker's unit) and the window is a whole number of microseconds per bucket, so every
decision, `retry_after`, state and counter must be equal after every step. Runs on both
backends (the in-process side is the active core).
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riprap import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from riprap._redis.server import RedisServer
from riprap.testing import ManualClock

_NAMES = itertools.count()

CONFIGS = st.builds(
    CircuitBreakerConfig,
    failure_threshold=st.integers(1, 4),
    timeout=st.sampled_from([1.0, 2.5, 2.5, 10.0]),
    success_threshold=st.integers(1, 3),
    monitoring_window=st.sampled_from([6.0, 60.0]),
    failure_rate_threshold=st.sampled_from([0.0, 0.5, 1.0]),
    minimum_calls=st.integers(1, 5),
    half_open_max_calls=st.integers(1, 3),
    slow_call_duration=st.sampled_from([None, 0.5]),
    slow_call_rate_threshold=st.sampled_from([0.5, 1.0]),
    excluded_exceptions=st.just((KeyError,)),
)
OUTCOMES = st.sampled_from(["ok", "fail", "ignored", "slow_ok", "slow_fail"])
STEPS = st.sampled_from([0.000001, 0.5, 1.0, 2.5, 5.0, 9.999999, 60.0])
CALL = st.tuples(st.just("call"), OUTCOMES)
OPS = st.lists(
    st.one_of(
        CALL,
        CALL,
        CALL,
        st.tuples(st.just("hold")),
        st.tuples(st.just("finish"), st.integers(0, 3), OUTCOMES),
        st.tuples(st.just("release"), st.integers(0, 3)),
        st.tuples(st.just("advance"), STEPS),
        st.tuples(st.just("advance"), STEPS),
        st.tuples(st.sampled_from(["reset", "force_open", "force_open", "state"])),
    ),
    min_size=12,
    max_size=60,
)
FIELDS = (
    "state",
    "failure_count",
    "success_count",
    "failure_rate",
    "time_since_last_failure",
    "total_calls",
    "consecutive_failures",
    "window_calls",
    "slow_call_count",
    "slow_call_rate",
    "half_open_calls",
    "half_open_successes",
    "open_duration",
    "retry_after",
    "total_successes",
    "total_failures",
    "total_ignored",
    "total_cancelled",
    "total_rejected",
    "total_lost_trials",
)


def _error(outcome: str) -> BaseException | None:
    return {
        "fail": ValueError("x"),
        "slow_fail": ValueError("x"),
        "ignored": KeyError(1),
    }.get(outcome)


def _call(breaker: CircuitBreaker, clock: ManualClock, outcome: str) -> Any:
    try:
        with contextlib.suppress(ValueError, KeyError), breaker:
            if outcome.startswith("slow"):
                clock.advance(0.5)
            error = _error(outcome)
            if error is not None:
                raise error
    except CircuitOpenError as e:
        return ("rejected", e.retry_after)
    return "done"


def _hold(breaker: CircuitBreaker, held: list[Any]) -> Any:
    try:
        held.append(breaker._engine.acquire())
    except CircuitOpenError as e:
        return ("rejected", e.retry_after)
    return "held"


@given(config=CONFIGS, ops=OPS, start=st.sampled_from([0.0, 1234.5]))
def test_breaker_on_redis_follows_the_in_process_rules(
    redis_server: RedisServer, config: CircuitBreakerConfig, ops: Any, start: float
) -> None:
    clocks = [ManualClock(start), ManualClock(start)]
    name = f"bdiff-{next(_NAMES)}"
    pair = [
        CircuitBreaker(name, config, clock=clocks[0]),
        CircuitBreaker(
            name,
            config,
            clock=clocks[1],
            storage=redis_server.url,
            time_source="client",
        ),
    ]
    held: list[list[Any]] = [[], []]
    for op in ops:
        kind = op[0]
        results = []
        for breaker, clock, permits in zip(pair, clocks, held, strict=True):
            if kind == "call":
                results.append(_call(breaker, clock, op[1]))
            elif kind == "hold":
                results.append(_hold(breaker, permits))
            elif kind in ("finish", "release"):
                if op[1] >= len(permits):
                    results.append(None)
                    continue
                permit = permits.pop(op[1])
                if kind == "release":
                    breaker._engine.release(permit)
                else:
                    if op[2].startswith("slow"):
                        clock.advance(0.5)
                    breaker._engine.record(permit, _error(op[2]))
                results.append(kind)
            elif kind == "advance":
                clock.advance(op[1])
                results.append(None)
            elif kind == "state":
                results.append(breaker.state)
            else:
                getattr(breaker, kind)()
                results.append(None)
        assert results[0] == results[1], op
        memory, shared = (b.get_stats() for b in pair)
        for field in FIELDS:
            if isinstance(memory[field], float):
                assert memory[field] == pytest.approx(shared[field], abs=1e-6), field
            else:
                assert memory[field] == shared[field], field
        for field in ("opened_at", "last_failure_time"):
            if memory[field] is None:
                assert shared[field] is None, field
            else:
                assert memory[field] == pytest.approx(shared[field], abs=1e-6), field
