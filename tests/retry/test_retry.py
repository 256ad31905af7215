"""Retry behaviour (decorator, hooks, logging, Retry-After, deadline).

Runs on the active backend. Comments cite the peer bugs a test guards against.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from helpers import halfway

import riprap
from riprap import RetryPolicy
from riprap._backend import core
from riprap.testing import ManualClock

FAST = {"base_delay": 0.1, "jitter": False}


class Flaky:
    """Fails `failures` times with `exc`, then returns `value`; records call times."""

    def __init__(
        self,
        failures: int,
        exc: Callable[[], BaseException] = lambda: ConnectionError("reset"),
        value: object = "ok",
        clock: ManualClock | None = None,
    ) -> None:
        self.failures, self.exc, self.value, self.clock = failures, exc, value, clock
        self.calls = 0
        self.times: list[float] = []
        self.raised: list[BaseException] = []

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        if self.clock is not None:
            self.times.append(self.clock.now())
        if self.calls <= self.failures:
            e = self.exc()
            self.raised.append(e)
            raise e
        return self.value


def run_block(
    policy: RetryPolicy, clock: ManualClock, fn: Callable[[], object]
) -> object:
    """The code-block form: `for attempt in policy.attempts(): with attempt: ...`."""
    for attempt in policy.attempts(clock=clock):
        with attempt:
            return fn()
    return None


def test_retries_then_succeeds_sleeping_the_backoff(clock: ManualClock) -> None:
    f = Flaky(2, clock=clock)
    wrapped = riprap.retry(max_attempts=3, clock=clock, **FAST)(f)
    assert wrapped() == "ok"
    assert f.calls == 3
    assert f.times == [0.0, 0.1, pytest.approx(0.3)]


def test_arguments_are_passed_again_on_every_attempt(clock: ManualClock) -> None:
    seen: list[tuple[object, ...]] = []

    class Store:
        @riprap.retry(max_attempts=3, clock=clock, **FAST)
        def put(self, key: str, *rest: int, sep: str = "-", **extra: int) -> str:
            seen.append((self, key, rest, sep, extra))
            if len(seen) % 3:
                raise ConnectionError("again")
            return sep.join([key, *map(str, rest), *map(str, extra.values())])

    s = Store()
    assert s.put("k", 1, 2, sep="+", z=9) == "k+1+2+9"
    assert seen == [(s, "k", (1, 2), "+", {"z": 9})] * 3
    assert Store.put(s, "j") == "j"
    assert getattr(s.put, "__self__", None) is s
    assert riprap.retry(clock=clock)(dict)(a=1) == {
        "a": 1
    }  # a builtin, keyword-only call


def test_failed_attempts_are_freed_at_once(clock: ManualClock) -> None:
    # Exceptions of retried attempts (and their tracebacks) must die when the call returns,
    # by reference counting alone: nothing may park them for a later garbage collection.
    import gc
    import weakref

    refs: list[weakref.ref[ConnectionError]] = []

    class Tracked(ConnectionError):
        def __init__(self, message: str) -> None:
            super().__init__(message)
            refs.append(weakref.ref(self))

    calls = 0

    def fails_twice() -> str:
        nonlocal calls
        calls += 1
        if calls % 3:
            raise Tracked("again")  # no local name: no frame <-> traceback cycle
        return "ok"

    async def afails_twice() -> str:
        return fails_twice()

    wrapped = riprap.retry(max_attempts=3, clock=clock, **FAST)(fails_twice)
    awrapped = riprap.retry(max_attempts=3, clock=clock, **FAST)(afails_twice)
    policy = RetryPolicy(max_attempts=3, **FAST)  # type: ignore[arg-type]
    gc.disable()
    try:
        for _ in range(50):
            assert wrapped() == "ok"
            assert asyncio.run(awrapped()) == "ok"
            assert run_block(policy, clock, fails_twice) == "ok"
        assert len(refs) == 300
        assert [r for r in refs if r() is not None] == []
    finally:
        gc.enable()


def test_non_retryable_raises_after_one_attempt(clock: ManualClock) -> None:
    f = Flaky(5, exc=lambda: ValueError("bad input"))
    with pytest.raises(ValueError, match="bad input"):
        riprap.retry(max_attempts=5, clock=clock, **FAST)(f)()
    assert f.calls == 1
    assert clock.now() == 0.0


def test_the_callers_own_last_exception_comes_back(clock: ManualClock) -> None:
    f = Flaky(10)
    with pytest.raises(ConnectionError) as info:
        riprap.retry(max_attempts=4, clock=clock, **FAST)(f)()
    assert f.calls == 4
    assert info.value is f.raised[-1]
    # The traceback still reaches into the failing function.
    assert info.traceback[-1].name == "__call__"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_control_flow_exceptions_are_never_retried(
    clock: ManualClock, exc_type: type[BaseException]
) -> None:
    # Llucs/backon#31 and jd/tenacity#529: even when BaseException is listed as retryable.
    f = Flaky(3, exc=exc_type)
    wrapped = riprap.retry(
        max_attempts=5, retryable_exceptions=(BaseException,), clock=clock, **FAST
    )(f)
    with pytest.raises(exc_type):
        wrapped()
    assert f.calls == 1


def test_cancelled_error_is_never_retried_async(clock: ManualClock) -> None:
    calls = 0

    @riprap.retry(
        max_attempts=5, retryable_exceptions=(BaseException,), clock=clock, **FAST
    )
    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())
    assert calls == 1


def test_wait_for_cancels_during_the_retry_sleep_without_more_attempts() -> None:
    # jd/tenacity#529, jd/tenacity#186: a real 10 s backoff, cancelled by wait_for after 50 ms.
    calls = 0

    @riprap.retry(
        max_attempts=5, base_delay=10.0, retryable_exceptions=(BaseException,)
    )
    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    async def timed(work: Callable[[], Awaitable[object]]) -> float:
        t0 = time.perf_counter()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(work(), 0.05)
        return time.perf_counter() - t0

    async def main() -> tuple[float, float]:
        # The baseline: the same wait_for around a plain 10 s sleep, timed in the same run.
        return await timed(lambda: asyncio.sleep(10.0)), await timed(failing)

    baseline, elapsed = asyncio.run(main())
    assert calls == 1
    # A retry that slept through its backoff would take the whole 10 s.
    assert elapsed < halfway(baseline, 10.0), (elapsed, baseline)


def test_a_zero_delay_never_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    # tenacity & co. call time.sleep(0) (~55 µs on Linux) for a zero wait. The sync wrapper and
    # code blocks sleep in the backend (natively on the Rust one, where a patched time.sleep
    # sees nothing), so the backend counts its real sleeps; async retries sleep with asyncio.
    real_sleeps = core.real_sleeps
    async_sleeps: list[float] = []
    real_asleep = asyncio.sleep

    async def counting_asleep(s: float, *a: Any) -> None:
        async_sleeps.append(s)
        await real_asleep(0)

    monkeypatch.setattr(asyncio, "sleep", counting_asleep)
    before = real_sleeps()
    f = Flaky(2)
    assert riprap.retry(max_attempts=3, base_delay=0.0, jitter=False)(f)() == "ok"
    h = Flaky(2)
    for attempt in RetryPolicy(base_delay=0.0).attempts():
        with attempt:
            h()
    g = Flaky(2)

    async def coro() -> object:
        return g()

    assert asyncio.run(riprap.retry(max_attempts=3, base_delay=0.0)(coro)()) == "ok"
    m = Flaky(2)
    manager = riprap.RetryManager(RetryPolicy(base_delay=0.0))
    assert asyncio.run(manager.retry_with_backoff(m, operation_id="m")) == "ok"
    assert (f.calls, h.calls, g.calls, m.calls) == (3, 3, 3, 3)
    assert real_sleeps() == before
    assert async_sleeps == []
    # The probe sees the sleeps it is there to see: a 5 ms delay, in each sync form.
    riprap.retry(max_attempts=2, base_delay=0.005, jitter=False)(Flaky(1))()
    assert real_sleeps() > before
    middle = real_sleeps()
    block = Flaky(1)
    for attempt in RetryPolicy(base_delay=0.005, jitter=False).attempts():
        with attempt:
            block()
    assert real_sleeps() > middle


def test_real_sleep_happens_for_a_positive_delay() -> None:
    f = Flaky(1)
    t0 = time.perf_counter()
    riprap.retry(max_attempts=2, base_delay=0.02, jitter=False)(f)()
    assert time.perf_counter() - t0 >= 0.019


def test_on_retry_gets_attempt_exception_and_the_delay_really_slept(
    clock: ManualClock,
) -> None:
    # hynek/stamina#72: the reported delay is the one slept.
    seen: list[tuple[int, str, float]] = []
    f = Flaky(3, clock=clock)
    wrapped = riprap.retry(
        max_attempts=4,
        base_delay=0.5,
        seed=11,
        clock=clock,
        on_retry=lambda a, e, d: seen.append((a, type(e).__name__, d)),
    )(f)
    wrapped()
    assert [s[0] for s in seen] == [1, 2, 3]
    assert all(s[1] == "ConnectionError" for s in seen)
    gaps = [b - a for a, b in zip(f.times, f.times[1:], strict=False)]
    assert gaps == pytest.approx([s[2] for s in seen], abs=2e-9)
    assert gaps != pytest.approx([0.5, 1.0, 2.0])  # jitter is on


def test_a_raising_hook_surfaces_chained_to_the_failure(clock: ManualClock) -> None:
    # resilience4j/resilience4j#2324: the hook's error surfaces; __context__ is the original
    # failure.
    f = Flaky(3)

    def hook(a: int, e: BaseException | None, d: float) -> None:
        raise RuntimeError("hook broke")

    with pytest.raises(RuntimeError, match="hook broke") as info:
        riprap.retry(max_attempts=4, clock=clock, on_retry=hook, **FAST)(f)()
    assert info.value.__context__ is f.raised[0]
    assert f.calls == 1


class TestDeadline:
    def test_no_sleep_crosses_the_deadline(self, clock: ManualClock) -> None:
        # jd/tenacity#423: exponential waits 1, 2, 4, ... with deadline 5: attempts at 0, 1, 3; the
        # next wait (4 s) would end at 7 > 5, so it stops at once without sleeping.
        f = Flaky(10, clock=clock)
        with pytest.raises(ConnectionError):
            riprap.retry(
                max_attempts=10, base_delay=1.0, jitter=False, deadline=5.0, clock=clock
            )(f)()
        assert f.times == [0.0, 1.0, 3.0]
        assert clock.now() == 3.0

    def test_retry_after_longer_than_the_time_left_gives_up_at_once(
        self, clock: ManualClock
    ) -> None:
        class Throttled(ConnectionError):
            retry_after = 30.0

        f = Flaky(3, exc=Throttled)
        with pytest.raises(Throttled):
            riprap.retry(max_attempts=3, deadline=10.0, clock=clock, **FAST)(f)()
        assert f.calls == 1
        assert clock.now() == 0.0

    def test_deadline_applies_to_async_and_code_blocks(
        self, clock: ManualClock
    ) -> None:
        policy = RetryPolicy(
            max_attempts=10, base_delay=1.0, jitter=False, deadline=5.0
        )
        f = Flaky(10, clock=clock)
        with pytest.raises(ConnectionError):
            run_block(policy, clock, f)
        assert f.times == [0.0, 1.0, 3.0]

        clock2 = ManualClock()
        g = Flaky(10, clock=clock2)

        async def coro() -> object:
            return g()

        with pytest.raises(ConnectionError):
            asyncio.run(riprap.retry(policy, clock=clock2)(coro)())
        assert g.times == [0.0, 1.0, 3.0]


class TestRetryAfter:
    def test_attribute_sets_the_delay_exactly_without_jitter(
        self, clock: ManualClock
    ) -> None:
        class Throttled(ConnectionError):
            retry_after = 7.25

        f = Flaky(1, exc=Throttled, clock=clock)
        riprap.retry(max_attempts=2, clock=clock)(f)()
        assert f.times == [0.0, 7.25]

    def test_clamped_to_max_delay(self, clock: ManualClock) -> None:
        class Throttled(ConnectionError):
            retry_after = 500

        f = Flaky(1, exc=Throttled, clock=clock)
        riprap.retry(max_attempts=2, max_delay=60.0, clock=clock)(f)()
        assert f.times == [0.0, 60.0]

    def test_header_seconds_and_response_headers(self, clock: ManualClock) -> None:
        class Response:
            headers = {"retry-after": " 3 "}

        class HTTPError(Exception):
            status_code = 429

            def __init__(self) -> None:
                super().__init__("too many requests")
                self.response = Response()

        f = Flaky(1, exc=HTTPError, clock=clock)
        riprap.retry(max_attempts=2, clock=clock)(f)()
        assert f.times == [0.0, 3.0]

        class HeaderError(ConnectionError):
            headers = {"Retry-After": "2"}

        g = Flaky(1, exc=HeaderError, clock=clock)
        riprap.retry(max_attempts=2, clock=clock)(g)()
        assert g.times == [3.0, 5.0]

    def test_http_date(self, clock: ManualClock) -> None:
        when = email.utils.formatdate(time.time() + 20, usegmt=True)

        class HeaderError(ConnectionError):
            headers = {"Retry-After": when}

        f = Flaky(1, exc=HeaderError, clock=clock)
        riprap.retry(max_attempts=2, clock=clock)(f)()
        assert 18.0 <= f.times[1] <= 21.0

    def test_garbage_header_falls_back_to_backoff(self, clock: ManualClock) -> None:
        class HeaderError(ConnectionError):
            headers = {"Retry-After": "soon-ish"}

        f = Flaky(1, exc=HeaderError, clock=clock)
        riprap.retry(max_attempts=2, clock=clock, **FAST)(f)()
        assert f.times == [0.0, 0.1]

    def test_can_be_ignored(self, clock: ManualClock) -> None:
        class Throttled(ConnectionError):
            retry_after = 9.0

        f = Flaky(1, exc=Throttled, clock=clock)
        riprap.retry(max_attempts=2, respect_retry_after=False, clock=clock, **FAST)(
            f
        )()
        assert f.times == [0.0, 0.1]


class TestClassification:
    def test_status_codes(self, clock: ManualClock) -> None:
        class HTTPError(Exception):
            def __init__(self, status: object) -> None:
                super().__init__("http error")
                self.status = status

        policy = RetryPolicy(max_attempts=2, **FAST)  # type: ignore[arg-type]
        assert policy.is_retryable(HTTPError(503))
        assert not policy.is_retryable(HTTPError(404))
        assert not policy.is_retryable(HTTPError("503"))  # a status must be an int

        class WithCode(Exception):
            status_code = 429

        assert policy.is_retryable(WithCode())
        f = Flaky(1, exc=lambda: HTTPError(502))
        assert riprap.retry(policy, clock=clock)(f)() == "ok"

    def test_message_patterns_are_case_insensitive(self) -> None:
        policy = RetryPolicy()
        assert policy.is_retryable(RuntimeError("Upstream: Connection Refused by host"))
        assert policy.is_retryable(Exception("RATE LIMIT hit"))
        assert not policy.is_retryable(RuntimeError("disk full"))
        assert not RetryPolicy(retryable_message_patterns=()).is_retryable(
            RuntimeError("connection refused")
        )

    def test_subclasses_and_custom_types(self) -> None:
        policy = RetryPolicy(
            retryable_exceptions=(KeyError,), retryable_message_patterns=()
        )
        assert policy.is_retryable(KeyError("x"))
        assert not policy.is_retryable(ConnectionError("x"))
        assert RetryPolicy().is_retryable(ConnectionResetError())
        assert not RetryPolicy().is_retryable(KeyboardInterrupt())


class TestRetryOnResult:
    def test_retried_until_accepted(self, clock: ManualClock) -> None:
        results = iter([None, None, 42])
        calls = []

        @riprap.retry(
            max_attempts=5, retry_on_result=lambda r: r is None, clock=clock, **FAST
        )
        def poll() -> int | None:
            calls.append(clock.now())
            return next(results)

        assert poll() == 42
        assert calls == [0.0, 0.1, pytest.approx(0.3)]

    def test_last_result_returned_when_attempts_run_out(
        self, clock: ManualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        n = 0

        @riprap.retry(
            max_attempts=3, retry_on_result=lambda r: r < 10, clock=clock, **FAST
        )
        def poll() -> int:
            nonlocal n
            n += 1
            return n

        assert poll() == 3
        assert "result rejected by retry_on_result" in caplog.text

    def test_async_and_raising_predicate(self, clock: ManualClock) -> None:
        results = iter(["wait", "done"])

        @riprap.retry(
            max_attempts=3, retry_on_result=lambda r: r == "wait", clock=clock, **FAST
        )
        async def poll() -> str:
            return next(results)

        assert asyncio.run(poll()) == "done"

        def broken(r: object) -> bool:
            raise LookupError("predicate broke")

        with pytest.raises(LookupError):
            riprap.retry(max_attempts=3, retry_on_result=broken, clock=clock)(
                lambda: 1
            )()


class TestLogging:
    def test_warning_per_retried_failure_and_one_error_at_the_end(
        self, clock: ManualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        f = Flaky(10)

        @riprap.retry(max_attempts=3, clock=clock, **FAST)
        def op() -> object:
            return f()

        with pytest.raises(ConnectionError):
            op()
        records = [(r.levelno, r.name) for r in caplog.records]
        assert records == [
            (logging.WARNING, "riprap"),
            (logging.WARNING, "riprap"),
            (logging.ERROR, "riprap"),
        ]
        assert "attempt 1 of 3 failed" in caplog.records[0].getMessage()
        assert "retrying in 0.100s" in caplog.records[0].getMessage()
        assert "op" in caplog.records[0].getMessage()
        assert "giving up: attempts exhausted" in caplog.records[2].getMessage()

    def test_non_retryable_logs_debug_at_most(
        self, clock: ManualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        with pytest.raises(ValueError):
            riprap.retry(clock=clock)(Flaky(1, exc=ValueError))()
        assert all(r.levelno <= logging.DEBUG for r in caplog.records)

    def test_silent_when_the_logger_is_quiet(
        self, clock: ManualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        logging.getLogger("riprap").setLevel(logging.CRITICAL)
        with pytest.raises(ConnectionError):
            riprap.retry(max_attempts=2, clock=clock, **FAST)(Flaky(5))()
        assert caplog.records == []


class TestDecoratorShape:
    def test_keeps_metadata_signature_and_colour(self) -> None:
        def sync_fn(a: int, b: str = "x", *, c: float = 1.0) -> str:
            """Sync docs."""
            return f"{a}{b}{c}"

        async def async_fn(a: int) -> int:
            """Async docs."""
            return a

        for fn in (sync_fn, async_fn):
            wrapped = riprap.retry(fn)
            assert wrapped.__wrapped__ is fn  # type: ignore[attr-defined]
            assert wrapped.__name__ == fn.__name__
            assert wrapped.__qualname__ == fn.__qualname__
            assert wrapped.__doc__ == fn.__doc__
            assert wrapped.__module__ == fn.__module__
            assert inspect.signature(wrapped) == inspect.signature(fn)
            assert inspect.iscoroutinefunction(wrapped) == inspect.iscoroutinefunction(
                fn
            )
        assert riprap.retry(sync_fn)(1, c=2.0) == "1x2.0"

    def test_methods_static_and_class_methods(self, clock: ManualClock) -> None:
        class Client:
            def __init__(self) -> None:
                self.calls = 0

            @riprap.retry(max_attempts=3, clock=clock, **FAST)
            def fetch(self, x: int) -> tuple[Client, int]:
                self.calls += 1
                if self.calls < 2:
                    raise ConnectionError("once")
                return self, x

            @riprap.retry(clock=clock)
            @staticmethod
            def static(x: int) -> int:
                return x * 2

            @riprap.retry(clock=clock)
            @classmethod
            def klass(cls, x: int) -> tuple[type, int]:
                return cls, x

        c = Client()
        assert c.fetch(5) == (c, 5)
        assert c.calls == 2
        assert Client.fetch(c, 6) == (c, 6)
        assert Client.static(4) == 8
        assert c.static(4) == 8
        assert Client.klass(1) == (Client, 1)
        assert inspect.signature(c.fetch) == inspect.signature(
            Client.fetch.__wrapped__
        ).replace(
            parameters=list(
                inspect.signature(Client.fetch.__wrapped__).parameters.values()
            )[1:]
        )

    def test_partials_callable_objects_and_async_callables(
        self, clock: ManualClock
    ) -> None:
        f = Flaky(1)
        part = riprap.retry(clock=clock, **FAST)(functools.partial(f, 1))
        assert part() == "ok"

        class AsyncCallable:
            async def __call__(self, x: int) -> int:
                return x + 1

        wrapped = riprap.retry(clock=clock)(AsyncCallable())
        assert inspect.iscoroutinefunction(wrapped)
        assert asyncio.run(wrapped(1)) == 2

    def test_generator_functions_are_refused(self) -> None:
        # jd/tenacity#64: a generator's errors come while it is iterated; retry would be a silent
        # no-op.
        def gen() -> Any:
            yield 1

        async def agen() -> Any:
            yield 1

        for fn in (gen, agen):
            with pytest.raises(TypeError, match="generator function"):
                riprap.retry(fn)

    def test_bare_decorator_fields_override_and_retry_decorator(
        self, clock: ManualClock
    ) -> None:
        @riprap.retry
        def plain() -> int:
            return 3

        assert plain() == 3
        base = RetryPolicy(max_attempts=2, **FAST)  # type: ignore[arg-type]
        f = Flaky(3)
        with pytest.raises(ConnectionError):
            riprap.retry(base, clock=clock)(f)()
        assert f.calls == 2
        g = Flaky(3)
        assert riprap.retry(base, max_attempts=4, clock=clock)(g)() == "ok"
        h = Flaky(1)
        assert riprap.RetryDecorator(base, clock=clock)(h)() == "ok"
        with pytest.raises(TypeError, match="policy"):
            riprap.retry(42)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="clock"):
            riprap.retry(clock=time)
        with pytest.raises(TypeError, match="on_retry"):
            riprap.retry(on_retry=3)  # type: ignore[arg-type]

    def test_recursion_through_the_same_wrapper(self, clock: ManualClock) -> None:
        failed = set()

        @riprap.retry(max_attempts=2, clock=clock, **FAST)
        def fact(n: int) -> int:
            if n not in failed:
                failed.add(n)
                raise ConnectionError("first try fails")
            return 1 if n <= 1 else n * fact(n - 1)

        assert fact(6) == 720


class TestCodeBlock:
    def test_for_with_attempts(self, clock: ManualClock) -> None:
        f = Flaky(2, clock=clock)
        numbers = []
        for attempt in RetryPolicy(max_attempts=3, **FAST).attempts(clock=clock):  # type: ignore[arg-type]
            with attempt:
                numbers.append(attempt.number)
                result = f()
        assert result == "ok"
        assert numbers == [1, 2, 3]
        assert f.times == [0.0, 0.1, pytest.approx(0.3)]

    def test_gives_up_with_the_last_exception(self, clock: ManualClock) -> None:
        f = Flaky(5)
        with pytest.raises(ConnectionError) as info:
            run_block(RetryPolicy(max_attempts=2), clock, f)
        assert info.value is f.raised[-1]
        g = Flaky(5, exc=ValueError)
        with pytest.raises(ValueError):
            run_block(RetryPolicy(max_attempts=2), clock, g)
        assert g.calls == 1

    def test_async_for(self, clock: ManualClock) -> None:
        f = Flaky(2, clock=clock)
        hooks: list[int] = []

        async def main() -> object:
            async for attempt in RetryPolicy(**FAST).attempts(  # type: ignore[arg-type]
                clock=clock, on_retry=lambda a, e, d: hooks.append(a)
            ):
                with attempt:
                    return f()
            return None

        assert asyncio.run(main()) == "ok"
        assert hooks == [1, 2]
        assert f.times == [0.0, 0.1, pytest.approx(0.3)]

    def test_keyboard_interrupt_passes_through_a_block(
        self, clock: ManualClock
    ) -> None:
        f = Flaky(3, exc=KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            run_block(RetryPolicy(), clock, f)
        assert f.calls == 1


class TestBudget:
    def test_refused_retries_are_not_made(self, clock: ManualClock) -> None:
        budget = riprap.RetryBudget(
            ratio=0.0, min_per_second=0.2, window=10.0, clock=clock
        )
        policy = RetryPolicy(max_attempts=5, budget=budget, **FAST)  # type: ignore[arg-type]
        f = Flaky(100)
        with pytest.raises(ConnectionError):
            riprap.retry(policy, clock=clock)(f)()
        # min_per_second x window = 2 retries allowed in the window, then none.
        assert f.calls == 3
        stats = budget.get_stats()
        assert stats["total_withdrawals"] == 2
        assert stats["total_refused"] == 1
        assert stats["total_deposits"] == 1

    def test_first_attempts_earn_retries(self, clock: ManualClock) -> None:
        budget = riprap.RetryBudget(
            ratio=0.5, min_per_second=0.0, window=10.0, clock=clock
        )
        ok = riprap.retry(budget=budget, clock=clock)(lambda: 1)
        for _ in range(4):
            ok()
        f = Flaky(100)
        with pytest.raises(ConnectionError):
            riprap.retry(max_attempts=10, budget=budget, clock=clock, **FAST)(f)()
        # 5 first attempts x 0.5 = 2.5 retries: 2 made.
        assert f.calls == 3

    def test_async_path_uses_the_budget(self, clock: ManualClock) -> None:
        budget = riprap.RetryBudget(
            ratio=0.0, min_per_second=0.1, window=10.0, clock=clock
        )
        f = Flaky(100)

        @riprap.retry(max_attempts=5, budget=budget, clock=clock, **FAST)
        async def op() -> object:
            return f()

        with pytest.raises(ConnectionError):
            asyncio.run(op())
        assert f.calls == 2
