"""FallbackStrategy: the order of the levels, the cache, `degraded_timeout`, control flow.

Every level of the order (primary, each fallback, a fresh cached value, the default, the error)
is checked in three modes: sync (`execute_with_fallback_sync`), async with sync functions, and
async with async functions. Time moves on a ManualClock; two real-time audits check that a
deadline really bounds how long the caller waits. Runs on the active backend.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import riprap
from riprap import (
    MISSING,
    FallbackConfig,
    FallbackExhaustedError,
    FallbackStrategy,
    TimeoutExceededError,
)
from riprap.testing import ManualClock

MODES = ["sync", "async-with-sync-functions", "async"]


def flavour(mode: str, f: Callable[..., Any]) -> Callable[..., Any]:
    """`f` as the mode calls it: itself, or as an `async def` for the async mode."""
    if mode != "async":
        return f

    async def af(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        return f(*args, **kwargs)

    af.__name__ = getattr(f, "__name__", "af")
    return af


def run(
    s: FallbackStrategy,
    mode: str,
    primary: Callable[..., Any],
    fallbacks: list[Callable[..., Any]],
    *args: Any,
    **kwargs: Any,
) -> Any:
    primary = flavour(mode, primary)
    fallbacks = [flavour(mode, f) for f in fallbacks]
    if mode == "sync":
        return s.execute_with_fallback_sync(primary, fallbacks, *args, **kwargs)
    return asyncio.run(s.execute_with_fallback(primary, fallbacks, *args, **kwargs))


class Recorder:
    """A function that records its calls and returns `value` or raises `error`."""

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.__name__ = "recorder"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        if self.error is not None:
            raise self.error
        return self.value


def ok(value: Any) -> Recorder:
    return Recorder(value=value)


def fails(error: BaseException | None = None) -> Recorder:
    return Recorder(error=error or ConnectionError("down"))


@pytest.fixture
def strategy(clock: ManualClock) -> FallbackStrategy:
    return FallbackStrategy(FallbackConfig(cache_ttl=60.0), clock=clock, name="svc")


@pytest.mark.parametrize("mode", MODES)
class TestOrder:
    def test_1_primary_result_is_returned_and_cached(
        self, strategy: FallbackStrategy, mode: str
    ) -> None:
        fb = ok("fallback")
        assert run(strategy, mode, ok("fresh"), [fb], cache_key="k") == "fresh"
        assert fb.calls == []
        assert strategy.cache.get("k") == "fresh"

    def test_2_fallbacks_in_order_with_the_same_arguments(
        self, strategy: FallbackStrategy, mode: str
    ) -> None:
        first, second, third = fails(), ok("second"), ok("third")
        result = run(strategy, mode, fails(), [first, second, third], 1, "a", key="v")
        assert result == "second"
        assert first.calls == [((1, "a"), {"key": "v"})]
        assert second.calls == [((1, "a"), {"key": "v"})]
        assert third.calls == []

    def test_3_then_a_fresh_cached_value(
        self, strategy: FallbackStrategy, clock: ManualClock, mode: str
    ) -> None:
        run(strategy, mode, ok("cached"), [], cache_key="k")
        clock.advance(60.0)  # age == cache_ttl: still fresh
        fb = fails()
        assert run(strategy, mode, fails(), [fb], cache_key="k", default_value="d") == (
            "cached"
        )
        assert len(fb.calls) == 1  # the fallbacks come before the cache

    def test_4_then_the_default_once_the_cache_is_stale(
        self, strategy: FallbackStrategy, clock: ManualClock, mode: str
    ) -> None:
        run(strategy, mode, ok("cached"), [], cache_key="k")
        clock.advance(60.001)
        assert run(
            strategy, mode, fails(), [fails()], cache_key="k", default_value="d"
        ) == ("d")

    def test_5_else_exhausted_from_the_primary_error(
        self, strategy: FallbackStrategy, mode: str
    ) -> None:
        e0, e1, e2 = ConnectionError("p"), TimeoutError("f1"), ValueError("f2")
        with pytest.raises(FallbackExhaustedError) as info:
            run(strategy, mode, fails(e0), [fails(e1), fails(e2)], cache_key="nothing")
        err = info.value
        assert err.errors == [e0, e1, e2]  # every error, in order, the primary's first
        assert err.__cause__ is e0
        assert isinstance(err, riprap.ResilienceError)
        assert "svc" in str(err)

    def test_none_is_a_real_default(
        self, strategy: FallbackStrategy, mode: str
    ) -> None:
        assert run(strategy, mode, fails(), [fails()], default_value=None) is None
        with pytest.raises(FallbackExhaustedError):
            run(strategy, mode, fails(), [fails()], default_value=MISSING)

    def test_only_the_primary_result_is_cached(
        self, strategy: FallbackStrategy, mode: str
    ) -> None:
        assert (
            run(strategy, mode, fails(), [ok("degraded")], cache_key="k") == "degraded"
        )
        assert "k" not in strategy.cache
        with pytest.raises(FallbackExhaustedError):
            run(strategy, mode, fails(), [fails()], cache_key="k")

    def test_a_cached_none_is_served(
        self, strategy: FallbackStrategy, mode: str
    ) -> None:
        run(strategy, mode, ok(None), [], cache_key="k")
        assert (
            run(strategy, mode, fails(), [], cache_key="k", default_value="d") is None
        )

    def test_disabled_levels_are_skipped(self, clock: ManualClock, mode: str) -> None:
        s = FallbackStrategy(
            FallbackConfig(
                enable_cache_fallback=False,
                enable_default_value_fallback=False,
                enable_degraded_service_fallback=False,
            ),
            clock=clock,
        )
        fb = ok("fallback")
        run(s, mode, ok("fresh"), [], cache_key="k")
        assert len(s.cache) == 0
        with pytest.raises(FallbackExhaustedError) as info:
            run(s, mode, fails(), [fb], cache_key="k", default_value="d")
        assert fb.calls == []
        assert len(info.value.errors) == 1

    def test_fallback_errors_carry_the_primary_as_context(
        self, strategy: FallbackStrategy, mode: str
    ) -> None:
        primary_error = ConnectionError("p")
        with pytest.raises(FallbackExhaustedError) as info:
            run(strategy, mode, fails(primary_error), [fails(ValueError("f"))])
        assert info.value.errors[1].__context__ is primary_error

    def test_stats_count_each_level(
        self, strategy: FallbackStrategy, mode: str
    ) -> None:
        run(strategy, mode, ok(1), [], cache_key="k")
        run(strategy, mode, fails(), [fails(), ok(2)])
        run(strategy, mode, fails(), [], cache_key="k")
        run(strategy, mode, fails(), [], default_value=3)
        with pytest.raises(FallbackExhaustedError):
            run(strategy, mode, fails(), [fails()])
        s = strategy.get_stats()
        assert s["name"] == "svc"
        assert (s["calls"], s["primary_successes"], s["primary_failures"]) == (5, 1, 4)
        assert (s["fallback_successes"], s["fallback_failures"]) == (1, 2)
        assert (s["cache_fallbacks"], s["default_fallbacks"], s["exhausted"]) == (
            1,
            1,
            1,
        )
        assert s["cache"]["hits"] == 1


CFES: list[type[BaseException]] = [
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
    asyncio.CancelledError,
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cfe", CFES, ids=lambda c: c.__name__)
def test_control_flow_from_the_primary_skips_every_level(
    strategy: FallbackStrategy, mode: str, cfe: type[BaseException]
) -> None:
    fb = ok("fallback")
    strategy.cache.put("k", "cached")
    with pytest.raises(cfe):
        run(strategy, mode, fails(cfe()), [fb], cache_key="k", default_value="d")
    assert fb.calls == []
    assert strategy.get_stats()["calls"] == 0  # never counted


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cfe", CFES, ids=lambda c: c.__name__)
def test_control_flow_from_a_fallback_stops_the_chain(
    strategy: FallbackStrategy, mode: str, cfe: type[BaseException]
) -> None:
    later = ok("later")
    with pytest.raises(cfe):
        run(strategy, mode, fails(), [fails(cfe()), later], default_value="d")
    assert later.calls == []


def test_cancelling_the_caller_cancels_the_running_fallback(clock: ManualClock) -> None:
    s = FallbackStrategy(clock=clock)
    started, cleaned = asyncio.Event(), []

    async def slow() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(True)
        return "never"

    async def main() -> None:
        task = asyncio.ensure_future(
            s.execute_with_fallback(fails(), [slow, ok("next")], default_value="d")
        )
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)

    asyncio.run(main())
    assert cleaned == [True]


class TestDegradedTimeout:
    """What `degraded_timeout` means, judged on the strategy's clock."""

    @pytest.mark.parametrize("mode", MODES)
    def test_a_fallback_that_takes_longer_is_a_timeout(
        self, clock: ManualClock, mode: str
    ) -> None:
        s = FallbackStrategy(FallbackConfig(degraded_timeout=5.0), clock=clock)

        def slow() -> str:
            clock.sleep(5.5)
            return "late"

        def on_time() -> str:
            clock.sleep(5.0)  # exactly the bound: in time
            return "in time"

        assert run(s, mode, fails(), [slow, on_time]) == "in time"
        s2 = FallbackStrategy(FallbackConfig(degraded_timeout=5.0), clock=clock)
        with pytest.raises(FallbackExhaustedError) as info:
            run(s2, mode, fails(), [slow])
        timeout = info.value.errors[1]
        assert isinstance(timeout, TimeoutExceededError)
        assert timeout.timeout == 5.0
        assert s2.get_stats()["timeouts"] == 1

    def test_async_fallback_is_cancelled_at_the_deadline(
        self, clock: ManualClock
    ) -> None:
        s = FallbackStrategy(FallbackConfig(degraded_timeout=5.0), clock=clock)
        events: list[str] = []

        async def hangs() -> str:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                events.append("cancelled")
                raise
            finally:
                events.append("cleaned up")
            return "never"

        async def next_level() -> str:
            events.append("next level")
            return "next"

        async def main() -> Any:
            async def advance() -> None:
                await asyncio.sleep(0.01)
                clock.advance(5.1)

            mover = asyncio.ensure_future(advance())
            result = await s.execute_with_fallback(fails(), [hangs, next_level])
            await mover
            return result

        assert asyncio.run(main()) == "next"
        assert events == ["cancelled", "cleaned up", "next level"]

    def test_sync_fallback_thread_is_abandoned_at_the_deadline(
        self, clock: ManualClock
    ) -> None:
        s = FallbackStrategy(FallbackConfig(degraded_timeout=5.0), clock=clock)
        entered, release, finished = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )
        threads: list[str] = []

        def blocks() -> str:
            threads.append(threading.current_thread().name)
            entered.set()
            release.wait(30)
            finished.set()
            return "late"

        def mover() -> None:
            entered.wait(30)
            clock.advance(5.1)

        t = threading.Thread(target=mover)
        t.start()
        assert s.execute_with_fallback_sync(fails(), [blocks], default_value="d") == "d"
        t.join()
        assert not finished.is_set()  # the caller did not wait for it
        stats = s.get_stats()
        assert (stats["abandoned"], stats["abandoned_running"], stats["timeouts"]) == (
            1,
            1,
            1,
        )
        assert threads[0].startswith("riprap-fallback")
        (worker,) = [t for t in threading.enumerate() if t.name == threads[0]]
        release.set()
        # The abandoned count drops in a done-callback the worker thread itself runs when the
        # fallback returns: once the thread has ended, it has run.
        worker.join(30)
        assert not worker.is_alive()
        assert s.get_stats()["abandoned_running"] == 0

    def test_no_bound_runs_fallbacks_on_the_callers_thread(self) -> None:
        s = FallbackStrategy(FallbackConfig(degraded_timeout=None))
        where: list[threading.Thread] = []

        def fb() -> str:
            where.append(threading.current_thread())
            return "x"

        assert s.execute_with_fallback_sync(fails(), [fb]) == "x"
        assert asyncio.run(s.execute_with_fallback(fails(), [fb])) == "x"
        assert where == [threading.main_thread()] * 2

    def test_a_sync_fallback_in_a_thread_sees_the_callers_context(self) -> None:
        var: contextvars.ContextVar[str] = contextvars.ContextVar(
            "var", default="unset"
        )
        s = FallbackStrategy()
        var.set("request-42")

        def fb() -> str:
            return var.get()

        assert s.execute_with_fallback_sync(fails(), [fb]) == "request-42"
        assert asyncio.run(s.execute_with_fallback(fails(), [fb])) == "request-42"

    def test_async_mode_returns_an_awaitable_from_a_sync_fallback(
        self, clock: ManualClock
    ) -> None:
        s = FallbackStrategy(clock=clock)

        async def real() -> str:
            return "awaited"

        assert (
            asyncio.run(s.execute_with_fallback(fails(), [lambda: real()])) == "awaited"
        )


@pytest.mark.slow
class TestRealTimeAudit:
    """The bound holds in real time (a few hundred ms in all)."""

    def test_async_caller_waits_no_longer_than_the_bound(self) -> None:
        s = FallbackStrategy(FallbackConfig(degraded_timeout=0.05))

        async def sleeps() -> str:
            await asyncio.sleep(10)
            return "late"

        t0 = time.monotonic()
        assert (
            asyncio.run(s.execute_with_fallback(fails(), [sleeps], default_value=1))
            == 1
        )
        assert time.monotonic() - t0 < 1.0

    def test_sync_caller_waits_no_longer_than_the_bound(self) -> None:
        s = FallbackStrategy(FallbackConfig(degraded_timeout=0.05))
        release = threading.Event()
        t0 = time.monotonic()
        result = s.execute_with_fallback_sync(
            fails(), [lambda: release.wait(10)], default_value=1
        )
        elapsed = time.monotonic() - t0
        release.set()
        assert result == 1
        assert 0.05 <= elapsed < 1.0


class TestMisuse:
    def test_awaitable_from_a_sync_fallback_in_sync_mode(self) -> None:
        s = FallbackStrategy()

        async def coro() -> str:
            return "x"

        with pytest.raises(TypeError, match="returned an awaitable") as info:
            s.execute_with_fallback_sync(fails(), [lambda: coro()], default_value="d")
        assert isinstance(info.value.__context__, ConnectionError)
        gc.collect()  # an unawaited coroutine would warn here (warnings are errors)

    def test_async_fallback_in_sync_mode(self) -> None:
        async def afb() -> str:
            return "x"

        with pytest.raises(TypeError, match="is async, but this is a sync call"):
            FallbackStrategy().execute_with_fallback_sync(fails(), [afb])

    def test_async_primary_in_sync_mode(self) -> None:
        async def primary() -> str:
            return "x"

        with pytest.raises(
            TypeError, match=r"use `await strategy\.execute_with_fallback"
        ):
            FallbackStrategy().execute_with_fallback_sync(primary, [])

    @pytest.mark.parametrize(
        "fallbacks", [lambda: 1, "abc", 5, [1]], ids=["callable", "str", "int", "item"]
    )
    def test_fallbacks_must_be_a_sequence_of_callables(self, fallbacks: Any) -> None:
        with pytest.raises(TypeError, match="fallback_funcs"):
            FallbackStrategy().execute_with_fallback_sync(ok(1), fallbacks)

    def test_unhashable_cache_key_is_refused_before_the_call(self) -> None:
        primary = ok(1)
        with pytest.raises(TypeError, match="cache_key must be hashable, got list"):
            FallbackStrategy().execute_with_fallback_sync(primary, [], cache_key=["x"])
        assert primary.calls == []


def test_logs_each_level(
    strategy: FallbackStrategy, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(FallbackExhaustedError):
        strategy.execute_with_fallback_sync(fails(), [fails()])
    levels = [(r.levelno, r.name) for r in caplog.records]
    assert levels == [
        (logging.WARNING, "riprap"),
        (logging.WARNING, "riprap"),
        (logging.ERROR, "riprap"),
    ]
    assert "svc" in caplog.records[0].getMessage()


def test_a_raising_str_does_not_break_the_chain(strategy: FallbackStrategy) -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert strategy.execute_with_fallback_sync(fails(Weird()), [ok(1)]) == 1


def test_clear_cache(strategy: FallbackStrategy) -> None:
    strategy.execute_with_fallback_sync(ok(1), [], cache_key="a")
    strategy.execute_with_fallback_sync(ok(2), [], cache_key="b")
    strategy.clear_cache("a")
    assert "a" not in strategy.cache
    assert "b" in strategy.cache
    strategy.clear_cache()
    assert len(strategy.cache) == 0


@pytest.mark.parametrize(
    ("field", "value", "exc", "message"),
    [
        ("cache_ttl", 0, ValueError, "cache_ttl must be > 0.0, got 0.0"),
        ("cache_ttl", float("nan"), ValueError, "cache_ttl must be a finite number"),
        ("cache_ttl", "300", TypeError, "cache_ttl must be a number, got str"),
        ("degraded_timeout", -1.0, ValueError, "degraded_timeout must be > 0.0"),
        (
            "degraded_timeout",
            float("inf"),
            ValueError,
            "degraded_timeout must be a finite",
        ),
        (
            "degraded_timeout",
            True,
            TypeError,
            "degraded_timeout must be a number, got bool",
        ),
        ("cache_max_entries", 0, ValueError, "cache_max_entries must be >= 1, got 0"),
        ("cache_max_entries", 1.5, TypeError, "cache_max_entries must be an int"),
        ("enable_cache_fallback", 1, TypeError, "enable_cache_fallback must be a bool"),
        (
            "enable_default_value_fallback",
            None,
            TypeError,
            "enable_default_value_fallback",
        ),
        ("enable_degraded_service_fallback", "y", TypeError, "enable_degraded_service"),
    ],
)
def test_config_validation_names_the_field(
    field: str, value: object, exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc, match=message):
        FallbackConfig(**{field: value})  # type: ignore[arg-type]


def test_config_defaults_are_the_seed_values() -> None:
    c = FallbackConfig()
    assert (c.enable_cache_fallback, c.enable_default_value_fallback) == (True, True)
    assert c.enable_degraded_service_fallback is True
    assert (c.cache_ttl, c.degraded_timeout, c.cache_max_entries) == (300, 5.0, 10_000)


def test_strategy_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="config must be a FallbackConfig, got dict"):
        FallbackStrategy({})  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"clock must be a riprap\.testing\.ManualClock"
    ):
        FallbackStrategy(clock=time.monotonic)
