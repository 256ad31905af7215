"""What every native sync wrapper (retry, breaker, limiter, keyed limiter) must guarantee.

The Rust wrappers are called through vectorcall, before PyO3 knows the thread is attached; an
object they dropped carelessly there would be parked in PyO3's deferred-decref pool instead of
being freed. Exceptions (the callee's, and riprap's own rejections) must die with the call, by
reference counting alone. Runs on both backends.
"""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Callable, Iterator

import pytest

import riprap
from riprap.testing import ManualClock

REFS: list[weakref.ref[BaseException]] = []


class Tracked(ConnectionError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        REFS.append(weakref.ref(self))


def failing() -> None:
    raise Tracked("boom")  # no local name: no frame <-> traceback cycle


@pytest.fixture(autouse=True)
def _no_gc() -> Iterator[None]:
    logging.getLogger("riprap").setLevel(logging.CRITICAL)  # caplog would keep records
    REFS.clear()
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def assert_all_freed(expected: int) -> None:
    assert len(REFS) == expected
    assert [r for r in REFS if r() is not None] == []


def run(
    call: Callable[[], object], errors: type[BaseException], times: int = 50
) -> None:
    for _ in range(times):
        try:
            call()
        except errors as e:
            REFS.append(weakref.ref(e))
        else:
            pytest.fail("expected an exception")


def test_callee_exceptions_pass_through_every_wrapper(clock: ManualClock) -> None:
    wrappers = [
        riprap.retry(max_attempts=1, clock=clock)(failing),
        riprap.CircuitBreaker(
            "w",
            riprap.CircuitBreakerConfig(
                failure_threshold=10**6, failure_rate_threshold=1.0
            ),
        )(failing),
        riprap.RateLimiter(1e6, 1e6, clock=clock)(failing),
        riprap.KeyedRateLimiter(1e6, 1e6, clock=clock)(failing, key=lambda: "k"),
        riprap.Bulkhead("w", clock=clock)(failing),
        riprap.Bulkhead(
            "wa", riprap.BulkheadConfig(isolation_level="adaptive"), clock=clock
        )(failing),
    ]
    for w in wrappers:
        for _ in range(50):
            with pytest.raises(Tracked):
                w()
    assert_all_freed(300)


def test_rejections_are_freed(clock: ManualClock) -> None:
    breaker = riprap.CircuitBreaker("gone", clock=clock)
    breaker.force_open()
    run(breaker(failing), riprap.CircuitOpenError)
    limiter = riprap.RateLimiter(1.0, 1.0, on_limit="raise", clock=clock)
    limiter.try_acquire()
    run(limiter(failing), riprap.RateLimitExceeded)
    keyed = riprap.KeyedRateLimiter(1.0, 1.0, clock=clock)
    keyed.try_acquire("k")
    run(keyed(failing, key=lambda: "k", on_limit="raise"), riprap.RateLimitExceeded)
    bulkhead = riprap.Bulkhead(
        "full",
        riprap.BulkheadConfig(max_concurrent_calls=1, max_queue_size=0),
        clock=clock,
    )
    bulkhead.acquire()
    run(bulkhead(failing), riprap.BulkheadRejectedError)
    assert_all_freed(200)


def test_rejections_are_fresh_and_carry_retry_after(clock: ManualClock) -> None:
    breaker = riprap.CircuitBreaker(
        "x", riprap.CircuitBreakerConfig(timeout=30.0), clock=clock
    )
    breaker.force_open()
    clock.advance(10.0)
    guarded = breaker(failing)
    seen = []
    for _ in range(3):
        with pytest.raises(riprap.CircuitOpenError) as info:
            guarded()
        seen.append(info.value)
    assert len({id(e) for e in seen}) == 3
    assert all(e.name == "x" and e.retry_after == 20.0 for e in seen)


def test_stacked_wrappers_keep_their_own_policy(clock: ManualClock) -> None:
    # functools.update_wrapper copies the wrapped object's __dict__ into the wrapper: when the
    # wrapped object is itself a wrapper, that copy must not replace the outer one's state.
    calls = 0

    def flaky() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    inner = riprap.retry(max_attempts=2, base_delay=0.0, clock=clock)(flaky)
    outer = riprap.retry(max_attempts=3, base_delay=0.0, clock=clock)(inner)
    with pytest.raises(ConnectionError):
        outer()
    assert calls == 6
    assert outer.__wrapped__ is inner  # type: ignore[attr-defined]

    slow = riprap.RateLimiter(1.0, 1.0, on_limit="raise", clock=clock)
    fast = riprap.RateLimiter(1e6, 1e6, on_limit="raise", clock=clock)
    breaker = riprap.CircuitBreaker("stacked", clock=clock)
    keyed = riprap.KeyedRateLimiter(1.0, 1.0, clock=clock)
    both = breaker(fast(slow(keyed(lambda: "ok", key=lambda: "k", on_limit="raise"))))
    assert both() == "ok"
    with pytest.raises(riprap.RateLimitExceeded) as info:
        both()
    assert info.value.retry_after == 1.0  # the inner limiters still decide
    assert breaker.get_stats()["total_calls"] == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: riprap.RateLimiter(1.0, **kw),
        lambda **kw: riprap.KeyedRateLimiter(1.0, **kw),
        lambda **kw: riprap.CircuitBreaker("s", **kw),
    ],
    ids=["limiter", "keyed", "breaker"],
)
def test_storage_keywords_are_validated_and_storage_is_not_built_yet(
    make: Callable[..., object],
) -> None:
    # SPEC §18: on_storage_error= is a keyword of all three; Redis storage (§14) is missing.
    for mode in ("local", "fail_open", "fail_closed", None):
        make(on_storage_error=mode)
    with pytest.raises(ValueError, match="on_storage_error must be one of"):
        make(on_storage_error="fail_sideways")
    with pytest.raises(TypeError, match="on_storage_error must be a str"):
        make(on_storage_error=1)
    with pytest.raises(NotImplementedError, match="SPEC §14"):
        make(storage="redis://127.0.0.1:6379/0")
