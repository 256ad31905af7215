"""riprap's own rejections are load shedding, not failures of the dependency.

`RateLimitExceeded`, `BulkheadRejectedError` and `CircuitOpenError` mean "riprap refused this
call". A retry policy does not retry them unless it names their class (or a riprap base class
such as `ResilienceError`), whatever their message or status code says: `RateLimitExceeded`'s
message contains "rate limit", one of the default transient patterns, so without this rule
`@retry` around `@limiter(on_limit="raise")` would quietly turn shedding into waiting. A breaker
never counts an inner layer's rejection as a failure: it says nothing about the dependency the
breaker guards. Runs on the active backend; every path of retry (native sync wrapper, async
wrapper, code block, `RetryManager`) and of the breaker is covered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import riprap
from riprap import (
    BulkheadRejectedError,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    RateLimiter,
    RateLimitExceeded,
    ResilienceError,
    RetryPolicy,
)
from riprap.testing import ManualClock

REJECTIONS: dict[str, Callable[[], Exception]] = {
    "RateLimitExceeded": lambda: RateLimitExceeded("api", 0.5),
    # The bulkhead is not built yet; its rejection is raised as the bulkhead will raise it.
    "BulkheadRejectedError": lambda: BulkheadRejectedError("pool"),
    "CircuitOpenError": lambda: CircuitOpenError("db", 2.0),
}


def drained(clock: ManualClock) -> RateLimiter:
    """A limiter in raise mode with no token left (the next one is 1 s away)."""
    lim = RateLimiter(1, 1, name="api", on_limit="raise", clock=clock)
    assert lim.try_acquire()
    return lim


# Each form of retry, as `run(policy, clock, on_retry, body)`: the result, or the exception.
def via_decorator(
    policy: RetryPolicy, clock: ManualClock, hook: Any, body: Callable[[], object]
) -> object:
    return riprap.retry(policy, clock=clock, on_retry=hook)(lambda: body())()


def via_async_decorator(
    policy: RetryPolicy, clock: ManualClock, hook: Any, body: Callable[[], object]
) -> object:
    @riprap.retry(policy, clock=clock, on_retry=hook)
    async def op() -> object:
        return body()

    return asyncio.run(op())


def via_block(
    policy: RetryPolicy, clock: ManualClock, hook: Any, body: Callable[[], object]
) -> object:
    for attempt in policy.attempts(clock=clock, on_retry=hook):
        with attempt:
            return body()
    raise AssertionError("unreachable: the last attempt raises or returns")


def via_manager(
    policy: RetryPolicy, clock: ManualClock, hook: Any, body: Callable[[], object]
) -> object:
    manager = riprap.RetryManager(policy, clock=clock)
    return asyncio.run(manager.retry_with_backoff(body, operation_id="op"))


RETRY_WAYS = [via_decorator, via_async_decorator, via_block, via_manager]


class Counted:
    """Counts its calls; raises what `make` builds on each."""

    def __init__(self, make: Callable[[], Exception]) -> None:
        self.make, self.calls = make, 0

    def __call__(self) -> object:
        self.calls += 1
        raise self.make()


def test_the_default_patterns_would_match_a_rate_limit_message() -> None:
    # Why the rule is needed: the message alone would make it retryable.
    message = str(RateLimitExceeded("api", 0.5)).lower()
    assert any(p in message for p in RetryPolicy().retryable_message_patterns)
    assert RetryPolicy().is_retryable(RuntimeError(message))
    assert not RetryPolicy().is_retryable(RateLimitExceeded("api", 0.5))


@pytest.mark.parametrize("way", RETRY_WAYS)
def test_retry_around_a_raising_limiter_sheds_at_once(
    clock: ManualClock, way: Callable[..., object]
) -> None:
    lim = drained(clock)
    hooks: list[object] = []
    calls = 0

    @lim
    def limited() -> str:
        nonlocal calls
        calls += 1
        return "ran"

    policy = RetryPolicy(max_attempts=5, base_delay=0.25, jitter=False)
    with pytest.raises(RateLimitExceeded) as info:
        way(policy, clock, lambda *a: hooks.append(a), limited)
    assert info.value.retry_after == 1.0
    assert calls == 0  # the limited function never ran
    assert hooks == []  # no retry was scheduled
    assert clock.now() == 0.0  # nothing waited
    assert lim.get_stats()["rejected"] == 1  # exactly one attempt reached the limiter


@pytest.mark.parametrize("way", RETRY_WAYS)
@pytest.mark.parametrize("kind", list(REJECTIONS))
def test_no_rejection_is_retried_by_a_default_policy(
    clock: ManualClock, way: Callable[..., object], kind: str
) -> None:
    body = Counted(REJECTIONS[kind])
    hooks: list[object] = []
    with pytest.raises(type(REJECTIONS[kind]())):
        way(RetryPolicy(max_attempts=5), clock, lambda *a: hooks.append(a), body)
    assert (body.calls, hooks, clock.now()) == (1, [], 0.0)


@pytest.mark.parametrize("kind", list(REJECTIONS))
def test_status_codes_and_messages_never_make_a_rejection_retryable(
    clock: ManualClock, kind: str
) -> None:
    def rejection() -> Exception:
        e = REJECTIONS[kind]()
        e.status_code = 503  # type: ignore[attr-defined]
        e.status = 429  # type: ignore[attr-defined]
        return e

    message = str(rejection()).lower()
    policy = RetryPolicy(
        max_attempts=3,
        retryable_exceptions=(ConnectionError, Exception),  # Exception is not riprap's
        retryable_status_codes=(503, 429),
        retryable_message_patterns=(message, kind.lower()),
    )
    # The same attributes and message on an ordinary exception are retried...
    plain = RuntimeError(message)
    plain.status_code = 503  # type: ignore[attr-defined]
    assert policy.is_retryable(plain)
    # ...and on a rejection they are not.
    assert not policy.is_retryable(rejection())
    for way in RETRY_WAYS:
        body = Counted(rejection)
        with pytest.raises(type(REJECTIONS[kind]())):
            way(policy, clock, None, body)
        assert body.calls == 1, way.__name__


@pytest.mark.parametrize("way", RETRY_WAYS)
@pytest.mark.parametrize(
    ("named", "kind", "retried"),
    [
        (CircuitOpenError, "CircuitOpenError", True),
        (ResilienceError, "CircuitOpenError", True),
        (ResilienceError, "RateLimitExceeded", True),
        (ResilienceError, "BulkheadRejectedError", True),
        (RateLimitExceeded, "RateLimitExceeded", True),
        (BulkheadRejectedError, "BulkheadRejectedError", True),
        (RateLimitExceeded, "CircuitOpenError", False),  # named, but another rejection
        (CircuitOpenError, "BulkheadRejectedError", False),
    ],
)
def test_a_policy_that_names_a_rejection_retries_it(
    clock: ManualClock,
    way: Callable[..., object],
    named: type[Exception],
    kind: str,
    retried: bool,
) -> None:
    body = Counted(REJECTIONS[kind])
    policy = RetryPolicy(
        max_attempts=3,
        base_delay=0.1,
        jitter=False,
        retryable_exceptions=(named,),
        respect_retry_after=False,
    )
    assert policy.is_retryable(REJECTIONS[kind]()) is retried
    with pytest.raises(type(REJECTIONS[kind]())):
        way(policy, clock, None, body)
    assert body.calls == (3 if retried else 1)


@pytest.mark.parametrize("way", RETRY_WAYS)
def test_retrying_an_open_breaker_by_name_waits_its_retry_after(
    clock: ManualClock, way: Callable[..., object]
) -> None:
    # A policy that names CircuitOpenError waits what the breaker says (Retry-After) and gets
    # through once the breaker half-opens.
    b = CircuitBreaker(
        "db", CircuitBreakerConfig(timeout=3.0, success_threshold=1), clock=clock
    )
    b.force_open()
    clock.advance(1.0)
    guarded = b(lambda: "through")
    policy = RetryPolicy(
        max_attempts=2, retryable_exceptions=(CircuitOpenError,), jitter=False
    )
    assert way(policy, clock, None, guarded) == "through"
    assert clock.now() == 3.0  # waited exactly the 2 s the breaker asked for
    assert b.state.value == "closed"


def test_a_breaker_around_a_raising_limiter_never_opens_from_its_rejections(
    clock: ManualClock,
) -> None:
    b = CircuitBreaker(
        "outer",
        CircuitBreakerConfig(
            failure_threshold=1, minimum_calls=1, failure_rate_threshold=0.0
        ),
        clock=clock,
    )
    lim = drained(clock)

    @b
    @lim
    def call() -> str:
        return "ok"

    @b
    @lim
    async def acall() -> str:
        return "ok"

    def with_blocks() -> str:
        with b:
            with lim:
                return "ok"

    async def async_with_blocks() -> str:
        async with b:
            async with lim:
                return "ok"

    forms: list[Callable[[], object]] = [
        call,
        lambda: asyncio.run(acall()),
        with_blocks,
        lambda: asyncio.run(async_with_blocks()),
        lambda: asyncio.run(b.call(lim(lambda: "ok"))),
    ]
    for _ in range(3):
        for form in forms:
            with pytest.raises(RateLimitExceeded):
                form()
    s = b.get_stats()
    assert s["state"] == "closed"
    assert (s["failure_count"], s["consecutive_failures"], s["total_failures"]) == (
        0,
        0,
        0,
    )
    assert s["total_ignored"] == 15
    assert lim.get_stats()["rejected"] == 15
    clock.advance(1.0)  # a token again: the breaker was never in the way
    assert call() == "ok"


@pytest.mark.parametrize("kind", list(REJECTIONS))
def test_a_breaker_never_counts_a_rejection_and_a_trial_slot_comes_back(
    clock: ManualClock, kind: str
) -> None:
    b = CircuitBreaker(
        "outer",
        CircuitBreakerConfig(
            failure_threshold=1,
            timeout=5.0,
            half_open_max_calls=1,
            expected_exception=ResilienceError,  # even when the config names riprap's base
        ),
        clock=clock,
    )
    op = b(Counted(REJECTIONS[kind]))
    for _ in range(3):
        with pytest.raises(type(REJECTIONS[kind]())):
            op()
    assert (b.state.value, b.get_stats()["total_failures"]) == ("closed", 0)
    b.force_open()
    clock.advance(5.0)
    with pytest.raises(type(REJECTIONS[kind]())):
        op()  # a trial call that was shed inside: neither success nor failure
    s = b.get_stats()
    assert (s["state"], s["half_open_calls"], s["total_failures"]) == (
        "half_open",
        0,  # the trial slot is free again
        0,
    )
    assert b(lambda: "ok")() == "ok"
