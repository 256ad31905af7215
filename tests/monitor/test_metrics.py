"""riprap.metrics: the prometheus_client collector, its families, labels and caps."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from monitor_helpers import FakePrimitive, fake_bulkhead
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import riprap
from riprap import _exposition, _monitor, _registry, metrics
from riprap.testing import ManualClock

Sample = tuple[str, tuple[tuple[str, str], ...], float]


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    reg = CollectorRegistry()
    yield reg
    metrics.unregister(reg)


def scrape(reg: CollectorRegistry) -> dict[str, list[Sample]]:
    """Family name -> samples, parsed by prometheus_client's own parser."""
    text = generate_latest(reg).decode()
    return {
        f.name: [(s.name, tuple(sorted(s.labels.items())), s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def value(
    fams: dict[str, list[Sample]], family: str, sample: str, **labels: str
) -> float:
    want = tuple(sorted(labels.items()))
    (found,) = [v for name, lab, v in fams[family] if name == sample and lab == want]
    return found


def test_register_twice_returns_the_same_collector(registry: CollectorRegistry) -> None:
    first = metrics.register(registry)
    assert metrics.register(registry) is first
    assert _registry.retry_timing()
    metrics.unregister(registry)
    assert not _registry.retry_timing()
    assert metrics.register(registry) is not first


def test_reg_M1_T45_many_breakers_make_one_family_each(
    registry: CollectorRegistry, clock: ManualClock
) -> None:
    metrics.register(registry)
    metrics.register(registry)
    breakers = [riprap.CircuitBreaker(f"b{i}", clock=clock) for i in range(100)]
    for b in breakers[:50]:
        with b:
            pass
    first = scrape(registry)
    text = generate_latest(registry).decode()
    assert text.count("# TYPE circuit_breaker_state gauge") == 1
    state = first["circuit_breaker_state"]
    assert len(state) == 300  # 3 states x 100 names, as labels
    assert {dict(lab)["name"] for _, lab, _ in state} == {f"b{i}" for i in range(100)}
    for b in breakers[:10]:
        with pytest.raises(ConnectionError), b:
            raise ConnectionError
    second = scrape(registry)
    for name, lab, v in first["circuit_breaker_calls"]:
        (after,) = [
            w for n, lb, w in second["circuit_breaker_calls"] if (n, lb) == (name, lab)
        ]
        assert after >= v  # counters never go down while their breaker lives
    assert value(
        second, "circuit_breaker_failures", "circuit_breaker_failures_total", name="b3"
    )
    del breakers, b
    gc.collect()
    assert "circuit_breaker_state" not in scrape(
        registry
    )  # dropped: gone from the metrics


def test_two_breakers_with_one_name_are_two_series(
    registry: CollectorRegistry, clock: ManualClock
) -> None:
    metrics.register(registry)
    first = riprap.CircuitBreaker("db", clock=clock)
    second = riprap.CircuitBreaker("db", clock=clock)
    second.force_open()
    fams = scrape(registry)  # prometheus_client would raise on a duplicated series
    assert value(
        fams,
        "circuit_breaker_state",
        "circuit_breaker_state",
        name="db",
        state="closed",
    )
    assert value(
        fams,
        "circuit_breaker_state",
        "circuit_breaker_state",
        name="db#2",
        state="open",
    )
    assert first.name == second.name


def test_states_transitions_and_failure_rate(
    registry: CollectorRegistry, clock: ManualClock
) -> None:
    metrics.register(registry)
    b = riprap.CircuitBreaker(
        "api",
        riprap.CircuitBreakerConfig(failure_threshold=2, timeout=1.0),
        clock=clock,
    )
    for _ in range(2):
        with pytest.raises(ConnectionError), b:
            raise ConnectionError
    with pytest.raises(riprap.CircuitOpenError), b:
        pass
    clock.advance(1.0)
    fams = scrape(registry)
    assert value(
        fams,
        "circuit_breaker_state",
        "circuit_breaker_state",
        name="api",
        state="half_open",
    )
    moves = {
        dict(lab)["to_state"]: v for _, lab, v in fams["circuit_breaker_transitions"]
    }
    assert moves == {"open": 1.0, "half_open": 1.0}
    calls = {dict(lab)["outcome"]: v for _, lab, v in fams["circuit_breaker_calls"]}
    assert calls == {
        "success": 0,
        "failure": 2,
        "ignored": 0,
        "cancelled": 0,
        "rejected": 1,
    }
    assert (
        value(
            fams,
            "circuit_breaker_failure_rate",
            "circuit_breaker_failure_rate",
            name="api",
        )
        == 1.0
    )


def test_limiters_one_series_per_name_never_per_key(
    registry: CollectorRegistry, clock: ManualClock
) -> None:
    metrics.register(registry)
    plain = riprap.RateLimiter(1, name="api", clock=clock)
    keyed = riprap.KeyedRateLimiter(1, name="per_ip", clock=clock)
    plain.try_acquire()
    plain.try_acquire()
    for key in range(500):
        keyed.try_acquire(str(key))
    fams = scrape(registry)
    assert len(fams["rate_limiter_admitted"]) == 2
    assert (
        value(fams, "rate_limiter_admitted", "rate_limiter_admitted_total", name="api")
        == 1
    )
    assert (
        value(fams, "rate_limiter_rejected", "rate_limiter_rejected_total", name="api")
        == 1
    )
    assert (
        value(
            fams, "rate_limiter_admitted", "rate_limiter_admitted_total", name="per_ip"
        )
        == 500
    )
    assert value(fams, "rate_limiter_keys", "rate_limiter_keys", name="per_ip") == 500


def test_retry_families_and_histogram(
    registry: CollectorRegistry, clock: ManualClock
) -> None:
    metrics.register(registry)  # turns the duration histogram on
    fail = [1]

    @riprap.retry(max_attempts=3, base_delay=0.05, jitter=False, clock=clock)
    def fetch() -> int:
        clock.advance(0.01)
        if fail[0]:
            fail[0] -= 1
            raise ConnectionError
        return 1

    fetch()
    fetch()
    fams = scrape(registry)
    op = riprap._decorate.name_of(fetch)
    assert (
        value(fams, "retry_attempts", "retry_attempts_total", operation=op, attempt="1")
        == 2
    )
    assert (
        value(fams, "retry_attempts", "retry_attempts_total", operation=op, attempt="2")
        == 1
    )
    assert value(fams, "retry_success", "retry_success_total", operation=op) == 2
    assert value(fams, "retry_failures", "retry_failures_total", operation=op) == 0
    hist = "retry_duration_seconds"
    assert value(fams, hist, f"{hist}_count", operation=op) == 2
    assert value(fams, hist, f"{hist}_sum", operation=op) == pytest.approx(0.01 + 0.07)
    assert value(fams, hist, f"{hist}_bucket", operation=op, le="0.01") == 1
    assert value(fams, hist, f"{hist}_bucket", operation=op, le="0.05") == 1
    assert value(fams, hist, f"{hist}_bucket", operation=op, le="0.075") == 2
    assert value(fams, hist, f"{hist}_bucket", operation=op, le="+Inf") == 2


def test_contract_bulkhead_fallback_cache_and_dead_letter_families(
    registry: CollectorRegistry,
) -> None:
    metrics.register(registry)
    keep = [
        fake_bulkhead("database", 3, 4, rejected_calls=7, queued_calls=2),
        FakePrimitive(
            _registry.FALLBACK,
            "users",
            primary_successes=5,
            fallback_successes=2,
            cache_fallbacks=1,
            default_fallbacks=0,
            exhausted=1,
        ),
        FakePrimitive(
            _registry.RESULT_CACHE,
            "users",
            hits=4,
            misses=2,
            evictions=1,
            expirations=0,
            size=3,
        ),
        FakePrimitive(
            _registry.DEAD_LETTER_QUEUE,
            "dlq.sqlite3",
            entries=6,
            dropped_max_entries=2,
            dropped_max_age=1,
        ),
    ]
    fams = scrape(registry)
    assert (
        value(
            fams, "bulkhead_active_calls", "bulkhead_active_calls", resource="database"
        )
        == 3
    )
    assert (
        value(
            fams, "bulkhead_queued_calls", "bulkhead_queued_calls", resource="database"
        )
        == 2
    )
    assert (
        value(
            fams,
            "bulkhead_rejected_calls",
            "bulkhead_rejected_calls_total",
            resource="database",
        )
        == 7
    )
    assert (
        value(
            fams,
            "bulkhead_utilization_ratio",
            "bulkhead_utilization_ratio",
            resource="database",
        )
        == 0.75
    )
    answered = {dict(lab)["answered_by"]: v for _, lab, v in fams["fallback_calls"]}
    assert answered == {
        "primary": 5,
        "fallback": 2,
        "cache": 1,
        "default": 0,
        "exhausted": 1,
    }
    assert (
        value(fams, "result_cache_hits", "result_cache_hits_total", name="users") == 4
    )
    assert (
        value(fams, "result_cache_entries", "result_cache_entries", name="users") == 3
    )
    assert (
        value(fams, "dead_letter_entries", "dead_letter_entries", queue="dlq.sqlite3")
        == 6
    )
    assert (
        value(
            fams,
            "dead_letter_dropped",
            "dead_letter_dropped_total",
            queue="dlq.sqlite3",
            reason="max_age",
        )
        == 1
    )
    assert len(keep) == 4


def test_series_past_the_cap_are_summed_as_overflow(
    registry: CollectorRegistry, clock: ManualClock
) -> None:
    collector = metrics.register(registry, max_series=5)
    assert collector.max_series == 5
    breakers = [riprap.CircuitBreaker(f"b{i}", clock=clock) for i in range(8)]
    breakers[6].force_open()
    breakers[7].force_open()
    fams = scrape(registry)
    names = {dict(lab)["name"] for _, lab, _ in fams["circuit_breaker_state"]}
    assert names == {"b0", "b1", "b2", "b3", "b4", _registry.OVERFLOW}
    over = {
        dict(lab)["state"]: v
        for _, lab, v in fams["circuit_breaker_state"]
        if dict(lab)["name"] == _registry.OVERFLOW
    }
    assert over == {"closed": 1, "open": 2, "half_open": 0}
    assert (
        value(
            fams,
            "riprap_metrics_overflow",
            "riprap_metrics_overflow",
            kind="circuit_breaker",
        )
        == 3
    )


def test_bad_caps_are_refused() -> None:
    with pytest.raises(ValueError, match="max_series must be >= 1, got 0"):
        metrics.ResilienceCollector(max_series=0)
    with pytest.raises(TypeError, match="max_series must be an int, got bool"):
        metrics.ResilienceCollector(max_series=True)


def test_a_hand_made_family_of_the_same_name_is_a_clear_conflict(
    registry: CollectorRegistry,
) -> None:
    Gauge("circuit_breaker_state", "mine", ["name", "state"], registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        metrics.register(registry)


def test_the_servers_text_says_what_prometheus_client_says(
    registry: CollectorRegistry, clock: ManualClock
) -> None:
    metrics.register(registry)
    keep: list[Any] = [
        riprap.CircuitBreaker('quote"back\\slash\nnewline', clock=clock),
        riprap.RateLimiter(3, name="<b>api</b>", clock=clock),
        fake_bulkhead("db", 1, 2),
    ]
    _registry.retry_counters("op").succeeded(2, 0.3)
    ours = _exposition.render_text(
        _exposition.families(
            _monitor.take_snapshot(),
            max_series=1000,
            bounds=riprap._backend.core.RetryCounters.duration_bounds,
        )
    )

    def parsed(text: str) -> list[tuple[str, str, Sample]]:
        return sorted(
            (f.name, f.type, (s.name, tuple(sorted(s.labels.items())), s.value))
            for f in text_string_to_metric_families(text)
            for s in f.samples
        )

    assert parsed(ours) == parsed(generate_latest(registry).decode())
    assert len(keep) == 3
