"""The resilience monitor: one snapshot of every named primitive, a health score, alerts, a report.

`take_snapshot()` reads every live primitive the registry (`riprap._registry`) knows, once: the
`ResilienceMonitor`, the Prometheus collector (`riprap.metrics`) and `riprap serve` all build
what they show from one such snapshot, so the numbers of one scrape or one page agree.

What each kind must provide (its `get_stats()` dict; missing keys read as zero, so a kind with
no live objects, or an older object, simply shows nothing):

* `circuit_breaker`: `CircuitBreakerStats` (`state`, `failure_rate`, `open_duration`,
  `total_calls`, `total_failures`, `total_rejected`, ...).
* `rate_limiter`: `RateLimiterStats` / `KeyedRateLimiterStats` (`admitted`, `rejected`,
  `waited`, and `keys` for a keyed limiter: totals over every key, never a series per key).
* `bulkhead`: `name`, `active_calls`, `queued_calls`, `rejected_calls`, `total_calls`,
  `rejection_rate`, `utilization`, `current_limit`, `config` (`max_concurrent`, ...).
* `fallback`: `name`, `calls`, `primary_successes`, `primary_failures`, `fallback_successes`,
  `fallback_failures`, `cache_fallbacks`, `default_fallbacks`, `exhausted`.
* `result_cache`: `hits`, `misses`, `evictions`, `expirations`, `size`, `max_entries`.
* `dead_letter_queue`: `path`, `entries`, `dropped_max_entries`, `dropped_max_age`.

Retry operations are not objects: their counters come from `riprap._registry.retry_counters`.

A primitive whose `get_stats()` raises is left out of that snapshot (and logged at DEBUG on
logger `riprap`): a monitor must not fail because one dependency's file went away.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

from . import _registry
from ._breaker_registry import CircuitBreakerMonitor
from ._report import render
from ._stats import CircuitBreakerStats, RetryCountersSnapshot

__all__ = ["ResilienceMonitor", "Snapshot", "health_status", "take_snapshot"]

logger = logging.getLogger("riprap")


@dataclasses.dataclass
class Snapshot:
    """Everything the monitor reads, read once. Each mapping is by label, oldest first."""

    breakers: dict[str, CircuitBreakerStats]
    #: Per breaker label: transitions so far by (old state, new state).
    breaker_transitions: dict[str, dict[tuple[str, str], int]]
    rate_limiters: dict[str, Mapping[str, Any]]
    bulkheads: dict[str, Mapping[str, Any]]
    fallbacks: dict[str, Mapping[str, Any]]
    result_caches: dict[str, Mapping[str, Any]]
    dead_letter_queues: dict[str, Mapping[str, Any]]
    retries: dict[str, RetryCountersSnapshot]
    #: The newest breaker transitions (wall time), oldest first.
    recent_transitions: list[dict[str, Any]]
    #: Wall time (`time.time()`) when the snapshot was taken.
    timestamp: float


def _stats_of(kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, obj in _registry.live(kind):
        try:
            out[label] = obj.get_stats()
        except Exception:
            logger.debug(
                "monitor: get_stats() of %s %r failed", kind, label, exc_info=True
            )
    return out


def take_snapshot() -> Snapshot:
    """Read every live named primitive and every retry operation once."""
    transitions: dict[str, dict[tuple[str, str], int]] = {}
    breakers: dict[str, CircuitBreakerStats] = {}
    for label, breaker in _registry.live(_registry.BREAKER):
        breakers[label] = breaker.get_stats()
        transitions[label] = _registry.transitions_of(breaker._dispatch.transitions)
    return Snapshot(
        breakers=breakers,
        breaker_transitions=transitions,
        rate_limiters=_stats_of(_registry.RATE_LIMITER),
        bulkheads=_stats_of(_registry.BULKHEAD),
        fallbacks=_stats_of(_registry.FALLBACK),
        result_caches=_stats_of(_registry.RESULT_CACHE),
        dead_letter_queues=_stats_of(_registry.DEAD_LETTER_QUEUE),
        retries={op: c.snapshot() for op, c in _registry.retry_operations()},
        recent_transitions=_registry.recent_transitions(),
        timestamp=time.time(),
    )


def health_status(score: float) -> str:
    """The status of a health score: "healthy" above 0.8, "degraded" above 0.6, else "critical"."""
    if score > 0.8:
        return "healthy"
    if score > 0.6:
        return "degraded"
    return "critical"


def _number(stats: Mapping[str, Any], key: str) -> float:
    value = stats.get(key)
    return float(value) if isinstance(value, (int, float)) else 0.0


def _retry_patterns(retries: Mapping[str, RetryCountersSnapshot]) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for op, s in retries.items():
        calls = s["successes"] + s["failures"]
        if calls == 0 and not any(s["attempts"]):
            continue
        attempts = sum(s["attempts"])
        operations[op] = {
            "calls": calls,
            "successes": s["successes"],
            "failures": s["failures"],
            "success_rate": s["successes"] / calls if calls else 1.0,
            "attempts": attempts,
            "retries": attempts - s["attempts"][0],
            "attempts_by_number": _attempt_labels(s["attempts"]),
        }
    total = sum(o["calls"] for o in operations.values())
    successes = sum(o["successes"] for o in operations.values())
    return {
        "total_operations": total,
        "successful_operations": successes,
        "failed_operations": total - successes,
        "success_rate": successes / total if total else 1.0,
        "total_retries": sum(o["retries"] for o in operations.values()),
        "operations": operations,
    }


def _attempt_labels(attempts: list[int]) -> dict[str, int]:
    """Attempt counts by label: "1" .. "9", and "10+" for the last slot."""
    last = len(attempts) - 1
    return {
        (f"{i + 1}+" if i == last else str(i + 1)): n
        for i, n in enumerate(attempts)
        if n
    }


def _fallback_patterns(fallbacks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    keys = (
        "calls",
        "primary_successes",
        "primary_failures",
        "fallback_successes",
        "fallback_failures",
        "cache_fallbacks",
        "default_fallbacks",
        "exhausted",
    )
    totals = {k: int(sum(_number(s, k) for s in fallbacks.values())) for k in keys}
    return {**totals, "strategies": dict(fallbacks)}


class ResilienceMonitor:
    """Health, alerts and a report over every named primitive of the process.

    It reads what the registry knows: every circuit breaker and named rate limiter (and
    bulkhead, fallback strategy, result cache and dead-letter queue), whether made by a registry
    or a manager or constructed directly, for as long as each lives (the monitor holds no
    reference to them), and the retry counters of every retried operation.

    Health is the mean of three parts, each in [0, 1]:

    * circuit breakers: `1 - open / total` (half-open breakers count as not open; 1.0 with no
      breakers);
    * bulkheads: `1 - mean rejection rate` over the bulkheads (1.0 with none);
    * retries: the share of retried calls that finally succeeded, over every operation since the
      process started (1.0 before any call).

    `status` is "healthy" when the score is above 0.8, "degraded" above 0.6, "critical"
    otherwise. The rates are lifetime rates (the primitives' own counters): a past burst of
    failures keeps weighing on the score until enough good calls outweigh it.

    Args:
        alert_thresholds: Overrides of `alert_thresholds` entries.

    Attributes:
        alert_thresholds: `failure_rate` (0.3: a breaker whose window failure rate exceeds it),
            `open_duration` (300 s: a breaker out of CLOSED for longer, on its clock),
            `bulkhead_utilization` (0.9: a bulkhead whose utilization reaches it is near
            saturation).
        circuit_breaker_monitor: The `CircuitBreakerMonitor` of every live breaker (it shares
            `alert_thresholds`).
    """

    def __init__(self, *, alert_thresholds: Mapping[str, float] | None = None) -> None:
        self.circuit_breaker_monitor = CircuitBreakerMonitor()
        self.alert_thresholds: dict[str, float] = {
            "failure_rate": 0.3,
            "open_duration": 300.0,
            "bulkhead_utilization": 0.9,
        }
        if alert_thresholds is not None:
            unknown = set(alert_thresholds) - set(self.alert_thresholds)
            if unknown:
                raise ValueError(
                    f"alert_thresholds: unknown key(s) {sorted(unknown)!r}; known: "
                    f"{sorted(self.alert_thresholds)!r}"
                )
            self.alert_thresholds.update(alert_thresholds)
        self.circuit_breaker_monitor.alert_thresholds = self.alert_thresholds

    async def collect_resilience_metrics(self) -> dict[str, Any]:
        """Everything the monitor knows, from one snapshot.

        Keys: `circuit_breakers` (`CircuitBreakerMonitor` dashboard data: `summary`,
        `breakers`, `alerts`, `timestamp`, plus `transitions`, the newest transitions),
        `bulkheads`, `rate_limiters` (stats by label), `retry_patterns` (`total_operations`,
        `successful_operations`, `failed_operations`, `success_rate`, `total_retries`,
        `operations` by name), `fallback_patterns` (totals and `strategies` by label),
        `result_caches`, `dead_letter_queues`, `alerts` (every alert), `overall_health`
        (`score`, `circuit_breaker_health`, `bulkhead_health`, `retry_health`, `status`) and
        `timestamp` (wall time, `time.time()`).
        """
        return self.snapshot()

    def snapshot(self, snap: Snapshot | None = None) -> dict[str, Any]:
        """What `collect_resilience_metrics()` returns, without an event loop.

        Args:
            snap: A `Snapshot` already taken (default: take one now).
        """
        if snap is None:
            snap = take_snapshot()
        cb = self.circuit_breaker_monitor._dashboard(snap.breakers)
        cb["timestamp"] = snap.timestamp
        cb["transitions"] = snap.recent_transitions
        retry = _retry_patterns(snap.retries)
        alerts = [*cb["alerts"], *self._bulkhead_alerts(snap.bulkheads)]
        return {
            "circuit_breakers": cb,
            "bulkheads": dict(snap.bulkheads),
            "rate_limiters": dict(snap.rate_limiters),
            "retry_patterns": retry,
            "fallback_patterns": _fallback_patterns(snap.fallbacks),
            "result_caches": dict(snap.result_caches),
            "dead_letter_queues": dict(snap.dead_letter_queues),
            "alerts": alerts,
            "overall_health": self._health(cb, snap.bulkheads, retry),
            "timestamp": snap.timestamp,
        }

    def _bulkhead_alerts(
        self, bulkheads: Mapping[str, Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        limit = self.alert_thresholds["bulkhead_utilization"]
        alerts = []
        for label, stats in bulkheads.items():
            utilization = _number(stats, "utilization")
            if utilization >= limit:
                active = int(_number(stats, "active_calls"))
                queued = int(_number(stats, "queued_calls"))
                alerts.append(
                    {
                        "type": "bulkhead_saturation",
                        "severity": "warning",
                        "bulkhead": label,
                        "message": (
                            f"Bulkhead '{label}' is near saturation: {utilization:.0%} "
                            f"utilization ({active} active, {queued} queued)"
                        ),
                        "utilization": utilization,
                        "threshold": limit,
                    }
                )
        return alerts

    @staticmethod
    def _health(
        cb: Mapping[str, Any],
        bulkheads: Mapping[str, Mapping[str, Any]],
        retry: Mapping[str, Any],
    ) -> dict[str, Any]:
        summary = cb["summary"]
        total = summary["total_breakers"]
        cb_health = 1.0 - summary["open_breakers"] / total if total else 1.0
        bulkhead_health = 1.0
        if bulkheads:
            rates = [_number(s, "rejection_rate") for s in bulkheads.values()]
            bulkhead_health = 1.0 - sum(rates) / len(rates)
        retry_health = (
            float(retry["success_rate"]) if retry["total_operations"] else 1.0
        )
        score = (cb_health + bulkhead_health + retry_health) / 3
        return {
            "score": score,
            "circuit_breaker_health": cb_health,
            "bulkhead_health": bulkhead_health,
            "retry_health": retry_health,
            "status": health_status(score),
        }

    async def generate_resilience_report(self) -> str:
        """A human-readable report of `collect_resilience_metrics()`."""
        return self.report(self.snapshot())

    def report(
        self, metrics: Mapping[str, Any] | None = None, *, limit: int = 20
    ) -> str:
        """The text of `generate_resilience_report()`, without an event loop.

        Args:
            metrics: What `snapshot()` returned (default: take a snapshot now).
            limit: The most rows printed per section.
        """
        return render(metrics if metrics is not None else self.snapshot(), limit=limit)
