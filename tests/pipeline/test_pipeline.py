"""`riprap.Pipeline`: the same behaviour as the nested decorators, on both backends.

The main test builds two identical stacks of primitives on two manual clocks, composes one with
`Pipeline` and one by nesting the decorators by hand, and drives both with the same random
sequence of outcomes (success, a retryable failure, a non-retryable one, a control-flow
exception, clock jumps); every result, exception and statistic must be equal. The rest pins the
orders that cannot bite and what `explain()` says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import riprap
from riprap.testing import ManualClock


class Stack:
    """One set of primitives on its own clock, and a function whose outcomes are scripted."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.policy = riprap.RetryPolicy(max_attempts=3, base_delay=0.5, jitter=False)
        self.breaker = riprap.CircuitBreaker(
            "p",
            riprap.CircuitBreakerConfig(
                failure_threshold=4, timeout=5.0, minimum_calls=50
            ),
            clock=clock,
        )
        self.bulkhead = riprap.Bulkhead(
            "p", riprap.BulkheadConfig(max_concurrent_calls=2), clock=clock
        )
        self.limiter = riprap.RateLimiter(5.0, 3.0, name="p", clock=clock)
        self.script: list[str] = []
        self.calls = 0

    def outcome(self) -> int:
        self.calls += 1
        what = self.script.pop(0) if self.script else "ok"
        if what == "transient":
            raise ConnectionError("reset")
        if what == "fatal":
            raise ValueError("bad request")
        if what == "interrupt":
            raise KeyboardInterrupt
        return self.calls

    def policies(self) -> list[Any]:
        retry = riprap.RetryDecorator(self.policy, clock=self.clock)
        return [retry, self.breaker, self.bulkhead, self.limiter]

    def stats(self) -> tuple[object, ...]:
        b = self.breaker.get_stats()
        return (
            self.calls,
            b["state"],
            b["total_failures"],
            b["total_successes"],
            b["total_rejected"],
            self.bulkhead.get_stats()["active_calls"],
            self.limiter.get_stats(),
            self.clock.now(),
        )


def _outcome_of(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return ("ok", call())
    except KeyboardInterrupt:
        return ("KeyboardInterrupt", None)
    except Exception as e:
        return (type(e).__name__, str(e))


EVENTS = st.lists(
    st.one_of(
        st.lists(
            st.sampled_from(["ok", "transient", "fatal", "interrupt"]), max_size=4
        ).map(lambda s: ("call", s)),
        st.floats(0.0, 3.0).map(lambda dt: ("advance", dt)),
    ),
    max_size=40,
)


@settings(max_examples=60)
@given(events=EVENTS)
def test_a_pipeline_behaves_as_the_nested_decorators_sync(
    events: list[tuple[str, Any]],
) -> None:
    piped, nested = Stack(ManualClock()), Stack(ManualClock())
    f_piped = riprap.Pipeline(*piped.policies())(piped.outcome)
    f_nested = piped_nested(nested)
    for kind, arg in events:
        if kind == "advance":
            piped.clock.advance(arg)
            nested.clock.advance(arg)
            continue
        piped.script, nested.script = list(arg), list(arg)
        assert _outcome_of(f_piped) == _outcome_of(f_nested)
        assert piped.stats() == nested.stats()


def piped_nested(s: Stack) -> Callable[[], int]:
    retry, breaker, bulkhead, limiter = s.policies()
    return retry(breaker(bulkhead(limiter(s.outcome))))  # type: ignore[no-any-return]


@settings(max_examples=40)
@given(events=EVENTS)
def test_a_pipeline_behaves_as_the_nested_decorators_async(
    events: list[tuple[str, Any]],
) -> None:
    piped, nested = Stack(ManualClock()), Stack(ManualClock())

    async def a_piped() -> int:
        return piped.outcome()

    async def a_nested() -> int:
        return nested.outcome()

    f_piped = riprap.Pipeline(*piped.policies())(a_piped)
    retry, breaker, bulkhead, limiter = nested.policies()
    f_nested = retry(breaker(bulkhead(limiter(a_nested))))
    for kind, arg in events:
        if kind == "advance":
            piped.clock.advance(arg)
            nested.clock.advance(arg)
            continue
        piped.script, nested.script = list(arg), list(arg)
        assert _outcome_of(lambda: asyncio.run(f_piped())) == _outcome_of(
            lambda: asyncio.run(f_nested())
        )
        assert piped.stats() == nested.stats()


def test_control_flow_exceptions_pass_through_and_every_permit_comes_back(
    clock: ManualClock,
) -> None:
    s = Stack(clock)
    f = riprap.Pipeline(*s.policies())(s.outcome)
    for exc in ("interrupt",):
        s.script = [exc]
        with pytest.raises(KeyboardInterrupt):
            f()
    assert s.calls == 1  # never retried
    stats = s.breaker.get_stats()
    assert stats["total_failures"] == 0
    assert stats["total_cancelled"] == 1
    assert s.bulkhead.get_stats()["active_calls"] == 0


def test_an_inner_rejection_never_trips_an_outer_breaker(clock: ManualClock) -> None:
    breaker = riprap.CircuitBreaker(
        "outer", riprap.CircuitBreakerConfig(failure_threshold=2), clock=clock
    )
    limiter = riprap.RateLimiter(1.0, 1.0, on_limit="raise", clock=clock)
    retried = riprap.RetryPolicy(max_attempts=5, base_delay=0.0)
    calls = 0

    @riprap.Pipeline(retried, breaker, limiter)
    def fetch() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert fetch() == 1
    for _ in range(5):
        with pytest.raises(riprap.RateLimitExceeded):
            fetch()  # not retried (riprap's own rejection), not counted by the breaker
    assert calls == 1
    assert breaker.state is riprap.CircuitState.CLOSED
    assert breaker.get_stats()["total_failures"] == 0


def test_an_outer_deadline_stops_inner_retries(clock: ManualClock) -> None:
    attempts: list[float] = []
    policy = riprap.RetryPolicy(max_attempts=10, base_delay=2.0, jitter=False)

    @riprap.Pipeline(riprap.RetryDecorator(policy, clock=clock))
    def flaky() -> None:
        attempts.append(clock.now())
        raise ConnectionError("reset")

    # The 2 s sleep fits in the 3 s deadline; the next (4 s) does not: no sleep towards it.
    with riprap.deadline(3.0, clock=clock), pytest.raises(ConnectionError):
        flaky()
    assert attempts == [0.0, 2.0]


def test_call_acall_repr_and_explain(clock: ManualClock) -> None:
    breaker = riprap.CircuitBreaker("db", clock=clock)
    limiter = riprap.RateLimiter(10.0, name="api", clock=clock)
    pipeline = riprap.Pipeline(
        riprap.timeout(5.0),
        riprap.RetryPolicy(base_delay=0.1),
        breaker,
        limiter,
        riprap.timeout(1.0),
        name="db",
    )
    assert pipeline.call(lambda x: x + 1, 1) == 2

    async def double(x: int) -> int:
        return 2 * x

    assert asyncio.run(pipeline.acall(double, 4)) == 8
    with pytest.raises(TypeError, match="acall"):
        pipeline.call(double, 1)
    text = repr(pipeline)
    assert text.startswith("Pipeline('db': timeout(5s) -> retry(")
    assert "breaker 'db' -> limiter 'api' (10/s) -> timeout(1s))" in text
    explained = pipeline.explain()
    assert "1. timeout(5s)" in explained
    assert "No order warnings." in explained


def test_explain_warns_about_orders_users_regret(tmp_path: Any) -> None:
    limiter = riprap.RateLimiter(10.0, name="api")
    queue = riprap.DeadLetterQueue(tmp_path / "dlq.sqlite3")
    pipeline = riprap.Pipeline(
        limiter,
        riprap.RetryPolicy(),
        riprap.fallback(lambda: None),
        riprap.timeout(1.0),
        riprap.dead_letter(queue),
    )
    warnings = pipeline.warnings()
    assert any("fallback is inside" in w for w in warnings)
    assert any("timeout(1s) is inside retry" in w for w in warnings)
    assert any("dead letter is inside retry" in w for w in warnings)
    assert any(
        "outside retry: only the first attempt takes a token" in w for w in warnings
    )
    assert "Order warnings:" in pipeline.explain()
    queue.close()


def test_bad_pipelines_are_refused() -> None:
    with pytest.raises(TypeError, match="at least one policy"):
        riprap.Pipeline()
    with pytest.raises(TypeError, match="needs its key"):
        riprap.Pipeline(riprap.KeyedRateLimiter(1.0))
    with pytest.raises(TypeError, match="policies or decorators"):
        riprap.Pipeline(42)


def test_a_pipeline_keeps_the_functions_shape(clock: ManualClock) -> None:
    pipeline = riprap.Pipeline(riprap.CircuitBreaker("shape", clock=clock))

    class Service:
        @pipeline
        def sync(self, x: int) -> int:
            """Doc."""
            return x

        @pipeline
        async def asynchronous(self, x: int) -> int:
            return x

    import inspect

    assert Service().sync(3) == 3
    assert Service.sync.__name__ == "sync"
    assert Service.sync.__doc__ == "Doc."
    assert inspect.iscoroutinefunction(Service.asynchronous)
    assert asyncio.run(Service().asynchronous(4)) == 4
