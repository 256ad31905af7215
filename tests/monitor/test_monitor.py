"""ResilienceMonitor: health score, status thresholds, alerts, the report, and what it sees."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest
from monitor_helpers import FakePrimitive, fake_bulkhead

import riprap
from riprap import _registry
from riprap._monitor import health_status
from riprap.testing import ManualClock


def breaker(name: str, clock: ManualClock, **fields: Any) -> riprap.CircuitBreaker:
    return riprap.CircuitBreaker(
        name, riprap.CircuitBreakerConfig(**fields), clock=clock
    )


def retried_op(name: str, outcomes: list[bool], clock: ManualClock) -> None:
    """Counts one call per outcome (True: succeeds at once; False: fails, not retryable)."""
    counters = _registry.retry_counters(name)
    for ok in outcomes:
        if ok:
            counters.succeeded(1)
        else:
            counters.failed_attempt(1)
            counters.gave_up()


@pytest.mark.parametrize(
    ("score", "status"),
    [
        (1.0, "healthy"),
        (0.81, "healthy"),
        (0.8, "degraded"),  # "healthy" is strictly above 0.8
        (0.61, "degraded"),
        (0.6, "critical"),  # "degraded" is strictly above 0.6
        (0.0, "critical"),
    ],
)
def test_status_thresholds(score: float, status: str) -> None:
    assert health_status(score) == status


def test_nothing_to_watch_is_healthy() -> None:
    health = riprap.ResilienceMonitor().snapshot()["overall_health"]
    assert health == {
        "score": 1.0,
        "circuit_breaker_health": 1.0,
        "bulkhead_health": 1.0,
        "retry_health": 1.0,
        "status": "healthy",
    }


def test_health_is_the_mean_of_three_parts(clock: ManualClock) -> None:
    breakers = [breaker(f"b{i}", clock) for i in range(4)]
    breakers[0].force_open()
    half = breaker("half", clock, timeout=1.0)
    half.force_open()
    clock.advance(1.0)  # half-open now: not counted as open
    assert half.state is riprap.CircuitState.HALF_OPEN
    fakes = [  # contract: a bulkhead's rejection_rate
        fake_bulkhead("db", 1, 10, rejection_rate=0.2),
        fake_bulkhead("api", 1, 10, rejection_rate=0.4),
    ]
    retried_op("op", [True, True, True, False], clock)
    health = riprap.ResilienceMonitor().snapshot()["overall_health"]
    assert health["circuit_breaker_health"] == pytest.approx(1 - 1 / 5)
    assert health["bulkhead_health"] == pytest.approx(1 - 0.3)
    assert health["retry_health"] == pytest.approx(0.75)
    assert health["score"] == pytest.approx((0.8 + 0.7 + 0.75) / 3)
    assert health["status"] == "degraded"
    assert breakers
    assert fakes


def test_every_breaker_open_is_critical(clock: ManualClock) -> None:
    down = [breaker(f"down{i}", clock) for i in range(3)]
    for b in down:
        b.force_open()
    retried_op("op", [False] * 3 + [True], clock)
    m = riprap.ResilienceMonitor().snapshot()
    assert m["overall_health"]["score"] == pytest.approx((0 + 1 + 0.25) / 3)
    assert m["overall_health"]["status"] == "critical"


def test_alert_when_a_breaker_stays_open_too_long(clock: ManualClock) -> None:
    b = breaker("payments", clock, timeout=10_000.0)
    b.force_open()
    monitor = riprap.ResilienceMonitor()
    clock.advance(300.0)
    assert monitor.snapshot()["alerts"] == []  # 300 s is not more than 300 s
    clock.advance(0.5)
    (alert,) = monitor.snapshot()["alerts"]
    assert alert["type"] == "circuit_breaker_open"
    assert alert["circuit_breaker"] == "payments"
    assert alert["duration"] == pytest.approx(300.5)
    assert (
        alert["message"] == "Circuit breaker 'payments' has been open for 300.5 seconds"
    )


def test_alert_on_a_high_failure_rate(clock: ManualClock) -> None:
    b = breaker("search", clock, failure_threshold=100, minimum_calls=100)

    def call(ok: bool) -> None:
        with pytest.raises(ConnectionError) if not ok else _nothing():
            with b:
                if not ok:
                    raise ConnectionError

    for ok in [True] * 7 + [False] * 3:
        call(ok)
    monitor = riprap.ResilienceMonitor()
    assert monitor.snapshot()["alerts"] == []  # 30 % is not above 30 %
    call(False)
    (alert,) = monitor.snapshot()["alerts"]
    assert alert["type"] == "high_failure_rate"
    assert alert["failure_rate"] == pytest.approx(4 / 11)
    assert alert["message"] == "High failure rate for circuit breaker 'search': 36.36%"


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_contract_bulkhead_near_saturation_alert() -> None:
    cool = fake_bulkhead("db", 8, 10, utilization=0.89)
    hot = fake_bulkhead("files", 9, 10, queued_calls=4)
    alerts = riprap.ResilienceMonitor().snapshot()["alerts"]
    assert [a["bulkhead"] for a in alerts] == ["files"]  # 0.9 reaches the threshold
    assert alerts[0]["type"] == "bulkhead_saturation"
    assert alerts[0]["message"] == (
        "Bulkhead 'files' is near saturation: 90% utilization (9 active, 4 queued)"
    )
    assert (cool.label, hot.label) == ("db", "files")


def test_alert_thresholds_can_be_changed_and_unknown_ones_are_refused() -> None:
    half = fake_bulkhead("db", 5, 10)
    monitor = riprap.ResilienceMonitor(alert_thresholds={"bulkhead_utilization": 0.5})
    assert [a["bulkhead"] for a in monitor.snapshot()["alerts"]] == ["db"]
    assert monitor.circuit_breaker_monitor.alert_thresholds is monitor.alert_thresholds
    assert half.label == "db"
    with pytest.raises(ValueError, match="bulkhead_saturation"):
        riprap.ResilienceMonitor(alert_thresholds={"bulkhead_saturation": 0.5})


def test_collect_resilience_metrics_shape_and_wall_clock_timestamp(
    clock: ManualClock,
) -> None:
    clock.advance(5.0)  # the breakers' clock is not the timestamp's
    b = breaker("payments", clock)
    before = time.time()
    metrics = asyncio.run(riprap.ResilienceMonitor().collect_resilience_metrics())
    assert set(metrics) == {
        "circuit_breakers",
        "bulkheads",
        "rate_limiters",
        "retry_patterns",
        "fallback_patterns",
        "result_caches",
        "dead_letter_queues",
        "alerts",
        "overall_health",
        "timestamp",
    }
    assert before <= metrics["timestamp"] <= time.time()
    cb = metrics["circuit_breakers"]
    assert set(cb) >= {"summary", "breakers", "alerts", "timestamp", "transitions"}
    assert cb["summary"]["total_breakers"] == 1
    assert cb["breakers"]["payments"]["state"] == "closed"
    assert b.name == "payments"


def test_it_sees_registry_made_and_direct_breakers_and_forgets_dropped_ones(
    clock: ManualClock,
) -> None:
    registry = riprap.CircuitBreakerRegistry()
    registry.get_breaker("made", clock=clock)
    direct = breaker("direct", clock)
    monitor = riprap.ResilienceMonitor()
    assert list(monitor.snapshot()["circuit_breakers"]["breakers"]) == [
        "made",
        "direct",
    ]
    del direct
    gc.collect()
    assert list(monitor.snapshot()["circuit_breakers"]["breakers"]) == ["made"]


def test_two_live_breakers_with_one_name_are_both_shown(clock: ManualClock) -> None:
    first = breaker("db", clock)
    second = breaker("db", clock)
    second.force_open()
    breakers = riprap.ResilienceMonitor().snapshot()["circuit_breakers"]["breakers"]
    assert {k: v["state"] for k, v in breakers.items()} == {
        "db": "closed",
        "db#2": "open",
    }
    del first
    gc.collect()
    third = breaker("db", clock)  # takes the free label; the second keeps its own
    breakers = riprap.ResilienceMonitor().snapshot()["circuit_breakers"]["breakers"]
    assert {k: v["state"] for k, v in breakers.items()} == {
        "db#2": "open",
        "db": "closed",
    }
    assert third.name == "db"


def test_limiters_named_ones_only_and_keyed_ones_as_one(clock: ManualClock) -> None:
    named = riprap.RateLimiter(2, name="api", clock=clock)
    unnamed = riprap.RateLimiter(2, clock=clock)  # not shown
    keyed = riprap.KeyedRateLimiter(1, name="per_user", clock=clock)
    for _ in range(3):
        named.try_acquire()
    for key in range(50):
        keyed.try_acquire(key)
    limiters = riprap.ResilienceMonitor().snapshot()["rate_limiters"]
    assert list(limiters) == ["api", "per_user"]
    assert (limiters["api"]["admitted"], limiters["api"]["rejected"]) == (2, 1)
    assert (limiters["per_user"]["admitted"], limiters["per_user"]["keys"]) == (50, 50)
    assert unnamed.get_stats()["name"] is None


def test_a_primitive_whose_stats_fail_is_left_out() -> None:
    class Broken(FakePrimitive):
        def get_stats(self) -> dict[str, Any]:
            raise OSError("the queue's file went away")

    broken = Broken(_registry.DEAD_LETTER_QUEUE, "gone.sqlite3")
    ok = FakePrimitive(_registry.DEAD_LETTER_QUEUE, "dlq.sqlite3", entries=3)
    queues = riprap.ResilienceMonitor().snapshot()["dead_letter_queues"]
    assert list(queues) == ["dlq.sqlite3"]
    assert (broken.label, ok.label) == ("gone.sqlite3", "dlq.sqlite3")


def test_contract_fallback_totals() -> None:
    shape = dict.fromkeys(
        (
            "calls",
            "primary_successes",
            "primary_failures",
            "fallback_successes",
            "fallback_failures",
            "cache_fallbacks",
            "default_fallbacks",
            "exhausted",
        ),
        0,
    )
    fakes = [
        FakePrimitive(
            _registry.FALLBACK, "users", **{**shape, "calls": 10, "cache_fallbacks": 2}
        ),
        FakePrimitive(
            _registry.FALLBACK, "orders", **{**shape, "calls": 5, "exhausted": 1}
        ),
    ]
    fb = riprap.ResilienceMonitor().snapshot()["fallback_patterns"]
    assert (fb["calls"], fb["cache_fallbacks"], fb["exhausted"]) == (15, 2, 1)
    assert list(fb["strategies"]) == [f.label for f in fakes] == ["users", "orders"]


def test_retry_patterns(clock: ManualClock) -> None:
    policy = riprap.RetryPolicy(max_attempts=3, base_delay=0.0, jitter=False)
    failures = [2]

    @riprap.retry(policy, clock=clock)
    def flaky() -> int:
        if failures[0]:
            failures[0] -= 1
            raise ConnectionError("reset")
        return 1

    flaky()  # fails twice, then succeeds
    failures[0] = 3
    with pytest.raises(ConnectionError):
        flaky()  # fails three times
    retry = riprap.ResilienceMonitor().snapshot()["retry_patterns"]
    (name,) = retry["operations"]
    assert name.endswith("test_retry_patterns.<locals>.flaky")
    op = retry["operations"][name]
    assert (op["calls"], op["successes"], op["failures"]) == (2, 1, 1)
    assert (op["attempts"], op["retries"]) == (6, 4)
    assert op["attempts_by_number"] == {"1": 2, "2": 2, "3": 2}
    assert (retry["total_operations"], retry["success_rate"]) == (2, 0.5)


def report_of(monitor: riprap.ResilienceMonitor) -> str:
    return asyncio.run(monitor.generate_resilience_report())


def test_report_text(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    b = breaker("payments", clock, failure_threshold=2)
    for _ in range(2):
        with pytest.raises(ConnectionError), b:
            raise ConnectionError
    search = breaker("search", clock)
    limiter = riprap.RateLimiter(1, name="api", clock=clock)
    limiter.try_acquire()
    limiter.try_acquire()
    bulkhead = fake_bulkhead("database", 9, 10, rejection_rate=0.25)
    retried_op("sync_fleet", [True, False], clock)
    dlq = FakePrimitive(_registry.DEAD_LETTER_QUEUE, "dlq.sqlite3", entries=4)
    assert report_of(riprap.ResilienceMonitor()) == (
        "=== riprap resilience report ===\n"
        "Generated at: 2027-01-15 08:00:00 UTC\n"
        "\n"
        "Overall Health Score: 58.33% (CRITICAL)\n"
        "  circuit breakers 50.0%, bulkheads 75.0%, retries 50.0%\n"
        "\n"
        "Circuit Breakers:\n"
        "  Total: 2\n"
        "  Open: 1\n"
        "  Half-Open: 0\n"
        "  payments: open, 2 calls, 2 failures, 0 rejected, window failure rate 100.0%\n"
        "  search: closed, 0 calls, 0 failures, 0 rejected, window failure rate 0.0%\n"
        "Alerts:\n"
        "  - High failure rate for circuit breaker 'payments': 100.00%\n"
        "  - Bulkhead 'database' is near saturation: 90% utilization (9 active, 0 queued)\n"
        "\n"
        "Resource Bulkheads:\n"
        "  database: 90.0% utilization, 25.00% rejection rate\n"
        "\n"
        "Rate Limiters:\n"
        "  api: 1 admitted (0 after waiting), 1 rejected\n"
        "\n"
        "Retries: 2 calls, 50.0% succeeded, 0 retries\n"
        "  sync_fleet: 2 calls, 50.0% succeeded, 0 retries\n"
        "\n"
        "Dead-Letter Queues:\n"
        "  dlq.sqlite3: 4 entries\n"
    )
    assert (search.name, bulkhead.label, dlq.label) == (
        "search",
        "database",
        "dlq.sqlite3",
    )


def test_report_lists_stop_at_the_limit(clock: ManualClock) -> None:
    keep = [breaker(f"b{i:02}", clock) for i in range(25)]
    report = riprap.ResilienceMonitor().report(limit=20)
    assert "  b19: closed" in report
    assert "  b20: closed" not in report
    assert "  ... and 5 more\n" in report
    assert len(keep) == 25
