"""Prometheus metrics for every named riprap primitive, read at scrape time.

`riprap.metrics.register()` adds one collector to a prometheus_client registry (the default one
unless told otherwise). Nothing is incremented per call by Python: at each scrape the collector
takes one snapshot of the primitives' own native counters (breakers, limiters, bulkheads,
fallbacks, result caches, dead-letter queues, retry operations) and yields the families from it,
so the numbers of one scrape agree with each other. It needs the optional extra:
`pip install 'riprap[prometheus]'`.

Families (counters carry `_total`):

* `circuit_breaker_state{name,state}` (1 for the current state), `circuit_breaker_failures_total
  {name}`, `circuit_breaker_calls_total{name,outcome}`, `circuit_breaker_failure_rate{name}`,
  `circuit_breaker_transitions_total{name,from_state,to_state}`;
* `retry_attempts_total{operation,attempt}` (attempt "1" .. "9", "10+"),
  `retry_success_total{operation}`, `retry_failures_total{operation}`,
  `retry_duration_seconds{operation}` (a histogram with fixed buckets, kept natively);
* `bulkhead_active_calls{resource}`, `bulkhead_queued_calls{resource}`,
  `bulkhead_rejected_calls_total{resource}`, `bulkhead_utilization_ratio{resource}`;
* `rate_limiter_admitted_total{name}`, `rate_limiter_rejected_total{name}`,
  `rate_limiter_waited_total{name}`, `rate_limiter_keys{name}` (keyed limiters);
* `fallback_calls_total{name,answered_by}`, `result_cache_hits_total{name}`, `..._misses_total`,
  `..._evictions_total`, `..._expirations_total`, `result_cache_entries{name}`;
* `dead_letter_entries{queue}`, `dead_letter_dropped_total{queue,reason}`;
* `riprap_metrics_overflow{kind}`: primitives past the series cap.

Names are labels, so a thousand breakers make one family each, and two live primitives with one
name are `name` and `name#2` (never "Duplicated timeseries"). A primitive that is dropped leaves
the metrics; its counters start from zero if it is made again (Prometheus reads that as a counter
reset, as after a restart).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Any

try:
    from prometheus_client.core import Metric
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "riprap.metrics needs prometheus_client: pip install 'riprap[prometheus]'"
    ) from err

from . import _exposition, _monitor, _registry
from ._backend import core

__all__ = ["DEFAULT_MAX_SERIES", "ResilienceCollector", "register", "unregister"]

#: The most names per kind shown apart; the rest are summed as `__overflow__`.
DEFAULT_MAX_SERIES = 1000


class ResilienceCollector(Collector):
    """A prometheus_client collector of every named riprap primitive (see the module docs).

    Args:
        max_series: The most names per kind (breakers, limiters, ..., retry operations) shown
            apart; past it, the rest of that kind is summed into `__overflow__`.
    """

    def __init__(self, *, max_series: int = DEFAULT_MAX_SERIES) -> None:
        if isinstance(max_series, bool) or not isinstance(max_series, int):
            raise TypeError(
                f"max_series must be an int, got {type(max_series).__name__}"
            )
        if max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {max_series!r}")
        self.max_series = max_series

    def describe(self) -> Iterator[Metric]:
        """Every family riprap may expose (names only; nothing is read)."""
        for fam in _exposition.empty_families().values():
            yield _metric(fam)

    def collect(self) -> Iterator[Metric]:
        """One snapshot of every primitive, as metric families."""
        snap = _monitor.take_snapshot()
        for fam in _exposition.families(
            snap, max_series=self.max_series, bounds=core.RetryCounters.duration_bounds
        ):
            yield _metric(fam)


def _metric(fam: _exposition.Family) -> Metric:
    metric = Metric(fam.name, fam.help, fam.kind)
    for suffix, labels, value in fam.samples:
        metric.add_sample(fam.name + suffix, dict(labels), value)
    return metric


_lock = threading.Lock()
_registered: weakref.WeakKeyDictionary[CollectorRegistry, ResilienceCollector] = (
    weakref.WeakKeyDictionary()
)


def register(
    registry: CollectorRegistry | None = None,
    *,
    max_series: int = DEFAULT_MAX_SERIES,
    retry_durations: bool = True,
) -> ResilienceCollector:
    """Add riprap's collector to `registry` (default: prometheus_client's global registry).

    Calling it again for the same registry returns the collector already there (it does not
    raise). Registering turns on the retry duration histogram (`retry_durations=False` leaves it
    off): each retried call then reads its clock when it starts and when it ends.

    Raises:
        ValueError: from prometheus_client, when another collector of `registry` already
            exposes one of riprap's family names (a hand-made `circuit_breaker_state` gauge).
    """
    reg: Any = REGISTRY if registry is None else registry
    with _lock:
        collector = _registered.get(reg)
        if collector is None:
            collector = ResilienceCollector(max_series=max_series)
            reg.register(collector)
            _registered[reg] = collector
    if retry_durations:
        _registry.set_retry_timing(True)
    return collector


def unregister(registry: CollectorRegistry | None = None) -> None:
    """Remove riprap's collector from `registry`; the last one removed turns retry timing off."""
    reg: Any = REGISTRY if registry is None else registry
    with _lock:
        collector = _registered.pop(reg, None)
        if collector is not None:
            reg.unregister(collector)
        if not _registered:
            _registry.set_retry_timing(False)
