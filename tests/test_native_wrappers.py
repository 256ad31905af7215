"""What every native sync wrapper (retry, breaker, limiter, keyed limiter) must guarantee.

The Rust wrappers are called through vectorcall, before PyO3 knows the thread is attached; an
object they dropped carelessly there would be parked in PyO3's deferred-decref pool instead of
being freed. Exceptions (the callee's, and riprap's own rejections) must die with the call, by
reference counting alone. Runs on both backends.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
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
def test_storage_keywords_are_validated(make: Callable[..., object]) -> None:
    # on_storage_error= and time_source= are keywords of all three, checked even without
    # storage=; building with storage= never connects (tests/redis covers the rest).
    for mode in ("local", "fail_open", "fail_closed", None):
        make(on_storage_error=mode)
    with pytest.raises(ValueError, match="on_storage_error must be one of"):
        make(on_storage_error="fail_sideways")
    with pytest.raises(TypeError, match="on_storage_error must be a str"):
        make(on_storage_error=1)
    with pytest.raises(ValueError, match="time_source must be one of"):
        make(time_source="sundial")
    with pytest.raises(TypeError, match="storage must be a redis:// URL"):
        make(storage=42)


def _every_wrapper(
    clock: ManualClock,
) -> dict[str, Callable[[Callable[..., object]], object]]:
    """One decorator per native wrapper type (`<P>Call`), keyed by the type's name."""
    keyed = riprap.KeyedRateLimiter(1e6, 1e6, clock=clock)
    return {
        "RetryCall": riprap.retry(max_attempts=1, clock=clock),
        "BreakerCall": riprap.CircuitBreaker("every", clock=clock),
        "LimitedCall": riprap.RateLimiter(1e6, 1e6, clock=clock),
        "KeyedLimitedCall": lambda f: keyed(f, key=lambda *a, **k: "k"),
        "BulkheadCall": riprap.Bulkhead("every", clock=clock),
    }


def _every_async_wrapper(
    clock: ManualClock,
) -> dict[str, Callable[[Callable[..., object]], object]]:
    """One decorator per native async wrapper type (`<P>AsyncCall`), keyed by its name."""
    return {
        "RetryAsyncCall": riprap.retry(max_attempts=1, clock=clock),
        "BreakerAsyncCall": riprap.CircuitBreaker("every-async", clock=clock),
        "LimitedAsyncCall": riprap.RateLimiter(1e6, 1e6, clock=clock),
        "BulkheadAsyncCall": riprap.Bulkhead("every-async", clock=clock),
    }


def test_every_native_wrapper_type_is_covered() -> None:
    # A new `<P>Call` / `<P>AsyncCall` type in the backend must be added to `_every_wrapper` /
    # `_every_async_wrapper` (and so get the checks below).
    backend_types = {n for n in dir(riprap._backend.core) if n.endswith("Call")}
    assert backend_types == set(_every_wrapper(ManualClock())) | set(
        _every_async_wrapper(ManualClock())
    )
    # ... and to the kinds the checks below run over, with the name of its engine getter.
    assert backend_types == set(SYNC_KINDS) | set(ASYNC_KINDS) == set(ENGINE_GETTER)


SYNC_KINDS = [
    "RetryCall",
    "BreakerCall",
    "LimitedCall",
    "KeyedLimitedCall",
    "BulkheadCall",
]
ASYNC_KINDS = [
    "RetryAsyncCall",
    "BreakerAsyncCall",
    "LimitedAsyncCall",
    "BulkheadAsyncCall",
]


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_every_native_wrapper_behaves_like_the_function(
    kind: str, clock: ManualClock
) -> None:
    decorate = _every_wrapper(clock)[kind]

    class Service:
        def __init__(self, base: int) -> None:
            self.base = base

        def add(self, x: int, *, times: int = 1) -> int:
            """Adds x, times times."""
            return self.base + x * times

    wrapped = decorate(Service.add)
    assert type(wrapped).__name__ == kind
    if riprap.backend() == "rust":
        # Vectorcall really is on for the type (it was turned on by the first instance).
        have_vectorcall = 1 << 11  # Py_TPFLAGS_HAVE_VECTORCALL
        assert type(wrapped).__flags__ & have_vectorcall
    assert wrapped.__wrapped__ is Service.add  # type: ignore[attr-defined]
    assert wrapped.__name__ == "add"  # type: ignore[attr-defined]
    assert wrapped.__doc__ == "Adds x, times times."
    assert inspect.signature(wrapped) == inspect.signature(Service.add)  # type: ignore[arg-type]
    Service.add = wrapped  # type: ignore[method-assign]
    assert Service(10).add(2, times=3) == 16  # binds as a method, keywords forwarded
    assert repr(wrapped).startswith(f"<riprap.{kind} wrapping <function")

    # The GC sees through the wrapper's own fields: a cycle function -> wrapper -> function
    # (built without `update_wrapper`, whose `__wrapped__` would be a second path) is collected.
    engine = getattr(wrapped, ENGINE_GETTER[kind])

    def cyclic() -> None: ...

    cyc = type(wrapped)(cyclic, engine)
    cyclic.me = cyc  # type: ignore[attr-defined]
    ref = weakref.ref(cyc)
    del cyc, cyclic
    gc.collect()
    assert ref() is None


ENGINE_GETTER = {
    "RetryCall": "retry_engine",
    "BreakerCall": "breaker_engine",
    "LimitedCall": "limiter",
    "KeyedLimitedCall": "keyed_limit",
    "BulkheadCall": "bulkhead_engine",
    "RetryAsyncCall": "retry_engine",
    "BreakerAsyncCall": "breaker_engine",
    "LimitedAsyncCall": "limiter",
    "BulkheadAsyncCall": "bulkhead_engine",
}


@pytest.mark.parametrize("kind", ASYNC_KINDS)
def test_every_native_async_wrapper_behaves_like_the_coroutine_function(
    kind: str, clock: ManualClock
) -> None:
    decorate = _every_async_wrapper(clock)[kind]

    class Service:
        def __init__(self, base: int) -> None:
            self.base = base

        async def add(self, x: int, *, times: int = 1) -> int:
            """Adds x, times times."""
            return self.base + x * times

    wrapped = decorate(Service.add)
    assert type(wrapped).__name__ == kind
    if riprap.backend() == "rust":
        have_vectorcall = 1 << 11  # Py_TPFLAGS_HAVE_VECTORCALL
        assert type(wrapped).__flags__ & have_vectorcall
    assert inspect.iscoroutinefunction(wrapped)
    assert asyncio.iscoroutinefunction(wrapped)
    assert wrapped.__wrapped__ is Service.add  # type: ignore[attr-defined]
    assert wrapped.__name__ == "add"  # type: ignore[attr-defined]
    assert wrapped.__doc__ == "Adds x, times times."
    assert inspect.signature(wrapped) == inspect.signature(Service.add)  # type: ignore[arg-type]
    Service.add = wrapped  # type: ignore[method-assign]
    bound = Service(10).add
    assert inspect.iscoroutinefunction(bound)
    assert asyncio.run(bound(2, times=3)) == 16  # binds as a method, keywords forwarded

    async def cyclic() -> None: ...

    engine = getattr(wrapped, ENGINE_GETTER[kind])
    cyc = type(wrapped)(cyclic, engine, cyclic)
    cyclic.me = cyc  # type: ignore[attr-defined]
    ref = weakref.ref(cyc)
    del cyc, cyclic
    gc.collect()
    assert ref() is None
