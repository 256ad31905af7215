"""RetryManager statistics, AdaptiveBackoffStrategy and IntelligentRetryManager."""

from __future__ import annotations

import asyncio
import collections
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

import riprap
from riprap import RetryPolicy
from riprap.testing import ManualClock


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


class Service:
    """Each call takes `cost` seconds of manual time and fails `fail_first` times first."""

    def __init__(
        self, clock: ManualClock, fail_first: int = 0, cost: float = 0.5
    ) -> None:
        self.clock, self.fail_first, self.cost = clock, fail_first, cost
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        self.clock.advance(self.cost)
        if self.calls <= self.fail_first:
            raise ConnectionError("flaky")
        return "ok"


def test_statistics_aggregate_every_call_honestly(clock: ManualClock) -> None:
    m = riprap.RetryManager(
        RetryPolicy(max_attempts=3, base_delay=1.0, jitter=False), clock=clock
    )
    assert m.get_retry_statistics("op") == {}
    assert run(m.retry_with_backoff(Service(clock, 1), operation_id="op")) == "ok"
    with pytest.raises(ConnectionError):
        run(m.retry_with_backoff(Service(clock, 5, cost=0.25), operation_id="op"))
    s = m.get_retry_statistics("op")
    assert s["total_calls"] == 2
    assert s["successful_calls"] == 1
    assert s["success_rate"] == 0.5  # the seed reported 1.0 here
    assert s["total_attempts"] == 5
    assert s["total_time"] == pytest.approx(2 * 0.5 + 3 * 0.25)  # sleeps excluded
    assert s["max_attempt_time"] == 0.5
    assert s["min_attempt_time"] == 0.25
    assert s["average_attempt_time"] == pytest.approx(1.75 / 5)


def test_async_functions_keyword_args_and_default_operation_id(
    clock: ManualClock,
) -> None:
    m = riprap.RetryManager(clock=clock)

    async def fetch(x: int, *, y: int) -> int:
        return x + y

    assert run(m.retry_with_backoff(fetch, 1, y=2)) == 3
    assert m.operations() == [
        f"{__name__}.test_async_functions_keyword_args_and_default_operation_id.<locals>.fetch"
    ]


def test_memory_is_constant_per_operation(clock: ManualClock) -> None:
    riprap_logger_quiet()  # caplog would keep every record
    m = riprap.RetryManager(RetryPolicy(base_delay=0.0), clock=clock)

    async def many(n: int) -> None:
        for _ in range(n):
            await m.retry_with_backoff(Service(clock, 1, cost=0.0), operation_id="op")

    run(many(200))
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    run(many(2000))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(
        s.size_diff for s in after.compare_to(before, "filename") if "riprap" in str(s)
    )
    assert grown < 10_000
    assert m.get_retry_statistics("op")["total_calls"] == 2200


def test_cancelled_calls_are_not_counted(clock: ManualClock) -> None:
    m = riprap.RetryManager(clock=clock)

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        run(m.retry_with_backoff(cancelled, operation_id="c"))
    assert m.get_retry_statistics("c")["total_calls"] == 0


class Ident(str):
    """A str subclass: still a str, so accepted."""


BAD_IDS: list[tuple[object, type[Exception], str]] = [
    (5, TypeError, "operation_id must be a str, got int"),
    (True, TypeError, "operation_id must be a str, got bool"),
    (b"op", TypeError, "operation_id must be a str, got bytes"),
    (("a", "b"), TypeError, "operation_id must be a str, got tuple"),
    (
        "op\udcff",
        ValueError,
        "operation_id must be valid Unicode (no lone surrogates), got 'op\\udcff'",
    ),
]


@pytest.mark.parametrize(("bad", "error", "message"), BAD_IDS)
def test_operation_ids_are_strs_and_a_refused_one_registers_nothing(
    clock: ManualClock, bad: object, error: type[Exception], message: str
) -> None:
    # The Rust backend once failed with "'int' object is not an instance of 'str'" after
    # registering the id, so every later call raised KeyError; the python backend accepted it.
    m = riprap.RetryManager(clock=clock)

    async def ok() -> str:
        return "ok"

    for _ in range(2):  # the second refusal is the same error, not a KeyError
        with pytest.raises(error) as info:
            run(m.retry_with_backoff(ok, operation_id=bad))  # type: ignore[arg-type]
        assert str(info.value) == message
    with pytest.raises(error) as info:
        m.get_retry_statistics(bad)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert m.operations() == []
    assert run(m.retry_with_backoff(ok, operation_id="5")) == "ok"
    assert run(m.retry_with_backoff(ok, operation_id=Ident("id"))) == "ok"
    assert m.operations() == ["5", "id"]
    assert m.get_retry_statistics("id")["total_calls"] == 1


def test_a_registration_that_fails_leaves_the_manager_usable(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever makes building an operation's engine fail (here: a forced error), nothing of
    # that operation is registered, and the next call registers it from scratch.
    from riprap import _retry_manager

    m = riprap.RetryManager(clock=clock)
    real = _retry_manager.make_engine
    failures = [RuntimeError("no engine today")]

    def flaky_make_engine(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(_retry_manager, "make_engine", flaky_make_engine)

    async def ok() -> str:
        return "ok"

    with pytest.raises(RuntimeError, match="no engine today"):
        run(m.retry_with_backoff(ok, operation_id="op"))
    assert m.operations() == []
    assert m.get_retry_statistics("op") == {}
    assert run(m.retry_with_backoff(ok, operation_id="op")) == "ok"
    assert m.get_retry_statistics("op")["total_calls"] == 1


class TestAdaptive:
    def test_factor_follows_the_success_rate(self) -> None:
        a = riprap.AdaptiveBackoffStrategy(RetryPolicy(jitter=False, base_delay=1.0))
        assert a.success_rate("db") == 0.8
        assert a.calculate_adaptive_delay("db", 2) == 2.0  # 0.8 -> factor 1.0
        for _ in range(10):
            a.record_operation_result("db", True)
        assert a.calculate_adaptive_delay("db", 2) == pytest.approx(1.4)  # > 0.9 -> 0.7
        for _ in range(10):
            a.record_operation_result("db", False)
        assert a.success_rate("db") == 0.5
        assert a.calculate_adaptive_delay("db", 2) == 4.0  # <= 0.5 -> 2.0

    @pytest.mark.parametrize(("bad", "error", "message"), BAD_IDS)
    def test_operation_ids_are_strs(
        self, bad: object, error: type[Exception], message: str
    ) -> None:
        a = riprap.AdaptiveBackoffStrategy()
        calls: list[Callable[[], object]] = [
            lambda: a.calculate_adaptive_delay(bad, 1),  # type: ignore[arg-type]
            lambda: a.record_operation_result(bad, True),  # type: ignore[arg-type]
            lambda: a.success_rate(bad),  # type: ignore[arg-type]
        ]
        for call in calls:
            with pytest.raises(error) as info:
                call()
            assert str(info.value) == message
        a.record_operation_result(Ident("db"), False)
        assert a.success_rate("db") == 0.0

    def test_history_is_the_last_hundred(self) -> None:
        a = riprap.AdaptiveBackoffStrategy()
        for _ in range(100):
            a.record_operation_result("x", False)
        for _ in range(60):
            a.record_operation_result("x", True)
        assert a.success_rate("x") == 0.6

    def test_scaled_delay_is_capped_then_jittered(self) -> None:
        a = riprap.AdaptiveBackoffStrategy(RetryPolicy(max_delay=10.0, seed=4))
        for _ in range(5):
            a.record_operation_result("x", False)
        draws = [a.calculate_adaptive_delay("x", 30) for _ in range(500)]
        assert min(draws) >= 9.0
        assert max(draws) <= 11.0
        assert len(set(draws)) > 450


class TestIntelligent:
    def test_first_call_uses_the_seed_mapping_then_explores(
        self, clock: ManualClock
    ) -> None:
        m = riprap.IntelligentRetryManager(clock=clock)
        assert m.select_strategy("network") == "exponential"
        assert m.select_strategy("database") == "linear"
        assert m.select_strategy("api") == "adaptive"
        assert m.select_strategy("other") == "exponential"

        async def ok() -> str:
            return "ok"

        picks = []
        for _ in range(3):
            picks.append(m.select_strategy("database"))
            run(m.smart_retry(ok, operation_type="database"))
        assert picks == ["linear", "exponential", "adaptive"]
        metrics = m.performance_metrics["database"]
        assert set(metrics) == {"linear", "exponential", "adaptive"}
        assert metrics["linear"]["total_operations"] == 1
        assert metrics["linear"]["success_rate"] == 1.0

    def test_learns_to_avoid_a_failing_strategy_but_keeps_exploring(
        self, clock: ManualClock
    ) -> None:
        # A dependency that needs 4 attempts: "linear" (3 attempts) always fails, the others
        # (5 attempts) succeed. The seed's picker would stay on "linear" forever.
        riprap_logger_quiet()
        m = riprap.IntelligentRetryManager(clock=clock)
        counts: collections.Counter[str] = collections.Counter()

        for _ in range(300):
            state = {"n": 0}

            async def needs_four(state: dict[str, int] = state) -> str:
                state["n"] += 1
                if state["n"] < 4:
                    raise ConnectionError("warming up")
                return "ok"

            name = m.select_strategy("database")
            counts[name] += 1
            try:
                run(m.smart_retry(needs_four, operation_type="database"))
            except ConnectionError:
                assert name == "linear"
        assert counts["linear"] < 60
        assert counts["linear"] >= 3  # still tried now and then
        assert counts["exponential"] + counts["adaptive"] > 240
        assert m.performance_metrics["database"]["linear"]["success_rate"] == 0.0

    def test_validation(self) -> None:
        with pytest.raises(ValueError, match="exploration"):
            riprap.IntelligentRetryManager(exploration=-1)
        with pytest.raises(TypeError, match="clock"):
            riprap.IntelligentRetryManager(clock="now")


def riprap_logger_quiet() -> None:
    import logging

    logging.getLogger("riprap").setLevel(logging.CRITICAL)
