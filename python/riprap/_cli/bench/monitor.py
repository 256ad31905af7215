"""Benchmark cases for monitoring: what metrics cost the hot path, and what a scrape costs.

Rows:

* breaker closed, sync, while a background thread scrapes every named primitive every 100 ms
  (riprap's collector, fully consumed) vs the same breaker with nobody scraping: metrics are read
  at scrape time, so the success path must cost the same.
* retry success path, sync: without counters (an engine that counts nothing), with the
  operation's counters (one relaxed atomic add per call: what every decorated function pays),
  and with the duration histogram on (two clock reads more, what `riprap.metrics.register()`
  switches on).
* one scrape of `SCRAPED` named primitives (breakers, rate limiters, keyed limiters and retry
  operations in equal parts): the collector's families, and the same written as Prometheus text
  (what `riprap serve` answers). Target: under 50 ms for 1,000.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable

from .harness import Case, Thunk, bare

__all__ = ["CASES", "SCRAPED"]

#: Named primitives in the scrape case (tests lower it to stay quick).
SCRAPED = 1000

_ids = itertools.count()


def _scrape_in_background(thunk: Thunk, every: float = 0.1) -> Thunk:
    """Scrape all metrics every `every` seconds for as long as `thunk` lives."""
    from riprap import metrics

    collector = metrics.ResilienceCollector()
    alive = weakref.ref(thunk)
    stop = threading.Event()

    def loop() -> None:
        while alive() is not None and not stop.wait(every):
            for _ in collector.collect():
                pass

    threading.Thread(target=loop, daemon=True, name="riprap-bench-scraper").start()
    weakref.finalize(thunk, stop.set)
    return thunk


def _breaker() -> Thunk:
    import riprap

    b = riprap.CircuitBreaker(f"bench-monitor-{next(_ids)}")
    return b(bare)


def _breaker_scraped() -> Thunk:
    return _scrape_in_background(_breaker())


def _retry(counted: bool = True, timing: bool = False) -> Callable[[], Thunk]:
    def build() -> Thunk:
        from riprap import _registry
        from riprap._backend import core
        from riprap._retry import RetryPolicy, make_engine

        name = f"bench-monitor-retry-{next(_ids)}"
        policy = RetryPolicy(
            max_attempts=3, base_delay=0.0, max_delay=0.0, jitter=False
        )
        engine = make_engine(policy, None, None, name, counted=counted)
        if counted:
            _registry.retry_counters(name).set_timing(timing)
        return core.RetryCall(bare, engine)

    return build


def _scrape(text: bool) -> Callable[[], Thunk]:
    def build() -> Thunk:
        import riprap
        from riprap import _exposition, _monitor, _registry, metrics
        from riprap._backend import core

        n = SCRAPED // 4
        run = next(_ids)
        keep: list[object] = []
        for i in range(n):
            b = riprap.CircuitBreaker(f"scrape-{run}-breaker-{i}")
            keep.append(b)
            keep.append(riprap.RateLimiter(100, name=f"scrape-{run}-limiter-{i}"))
            keep.append(riprap.KeyedRateLimiter(100, name=f"scrape-{run}-keyed-{i}"))
            _registry.retry_counters(f"scrape-{run}-op-{i}").succeeded(1)
        collector = metrics.ResilienceCollector(max_series=10 * SCRAPED)
        bounds = list(core.RetryCounters.duration_bounds)

        def families() -> object:
            keep_alive = keep  # the primitives live as long as the thunk
            return keep_alive and list(collector.collect())

        def as_text() -> object:
            fams = _exposition.families(
                _monitor.take_snapshot(), max_series=10 * SCRAPED, bounds=bounds
            )
            return keep and _exposition.render_text(fams)

        return as_text if text else families

    return build


CASES: list[Case] = [
    Case(
        "monitor_breaker_scraped",
        "breaker closed, sync, while scraped every 100 ms (vs not scraped)",
        None,
        {"riprap": _breaker, "scraped every 100 ms": _breaker_scraped},
    ),
    Case(
        "monitor_retry_counters",
        "retry success, sync: with counters (vs none, vs duration histogram on)",
        None,
        {
            "riprap": _retry(),
            "no counters": _retry(counted=False),
            "histogram on": _retry(timing=True),
        },
    ),
    Case(
        "monitor_scrape",
        f"one scrape of {SCRAPED:,} named primitives: collector (vs Prometheus text)",
        50e6,
        {"riprap": _scrape(text=False), "as text (riprap serve)": _scrape(text=True)},
    ),
]
