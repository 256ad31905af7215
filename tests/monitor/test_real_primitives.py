"""The monitor and the metrics see the real bulkhead, fallback strategy, cache and queue.

The contract tests next to this one drive the monitor with fakes of each kind's documented
stats; these build the real primitives, make them count something, and read the counts back
through `ResilienceMonitor.snapshot()` and a Prometheus scrape.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import riprap
from riprap import metrics
from riprap.testing import ManualClock


def samples(
    reg: CollectorRegistry,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(reg).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def fail() -> str:
    raise ConnectionError("down")


def test_real_primitives_are_monitored_and_scraped(tmp_path: Path) -> None:
    clock = ManualClock()
    bulkhead = riprap.Bulkhead(
        "db", riprap.BulkheadConfig(max_concurrent_calls=1, max_wait=0.0), clock=clock
    )
    with bulkhead, pytest.raises(riprap.BulkheadRejectedError):
        _enter_again(bulkhead)  # the one slot is taken
    strategy = riprap.FallbackStrategy(name="users", clock=clock)
    assert strategy.execute_with_fallback_sync(fail, [lambda: "fallback"]) == "fallback"
    cache = riprap.ResultCache(60.0, 8, clock=clock, name="profiles")
    cache.put("k", 1)
    assert cache.get("k") == 1
    dlq = riprap.DeadLetterQueue(tmp_path / "dlq.sqlite3")
    dlq.put("svc.op", (1,), error=ConnectionError("down"))

    snap = riprap.ResilienceMonitor().snapshot()
    assert snap["bulkheads"]["db"]["rejected_calls"] == 1
    assert snap["fallback_patterns"]["strategies"]["users"]["fallback_successes"] == 1
    assert snap["result_caches"]["profiles"]["hits"] == 1
    # The strategy's own cache is shown under the strategy's name.
    assert snap["result_caches"]["users"]["misses"] == 0
    assert snap["dead_letter_queues"][dlq.path]["entries"] == 1

    reg = CollectorRegistry()
    metrics.register(reg)
    try:
        got = samples(reg)
    finally:
        metrics.unregister(reg)
    assert got[("bulkhead_rejected_calls_total", (("resource", "db"),))] == 1
    assert got[("result_cache_hits_total", (("name", "profiles"),))] == 1
    dlq.close()


def _enter_again(bulkhead: riprap.Bulkhead) -> None:
    with bulkhead:
        pass


def test_a_dropped_primitive_leaves_the_monitor(tmp_path: Path) -> None:
    cache = riprap.ResultCache(60.0, 8, name="short-lived")
    assert "short-lived" in riprap.ResilienceMonitor().snapshot()["result_caches"]
    del cache
    gc.collect()
    assert "short-lived" not in riprap.ResilienceMonitor().snapshot()["result_caches"]
