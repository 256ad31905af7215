"""Every benchmark case, in table order: the one list `riprap bench` and `benches/` draw from.

The case modules import the harness, never the other way round; this module is the only place
that knows them all.
"""

from __future__ import annotations

from . import breaker, bulkhead, cache, limiter, monitor, pipeline, redis, retry
from .harness import Case

__all__ = ["all_cases", "selected"]


def all_cases() -> list[Case]:
    """Every case: the primitives, their stack, monitoring, then Redis (if it runs here)."""
    return [
        *retry.CASES,
        *breaker.CASES,
        *limiter.CASES,
        *bulkhead.CASES,
        *pipeline.CASES,
        *cache.CASES,
        *monitor.CASES,
        *redis.CASES,
    ]


def selected(*prefixes: str) -> list[tuple[Case, str]]:
    """(case, implementation) pairs for the cases whose key starts with one of `prefixes`.

    Peers do not depend on riprap's backend, so they are only listed on the Rust backend.
    """
    import riprap

    peers = riprap.backend() == "rust"
    return [
        (case, impl)
        for case in all_cases()
        if case.key.startswith(prefixes)
        for impl in case.available()
        if impl == "riprap" or peers
    ]
