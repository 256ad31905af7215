"""The text of `ResilienceMonitor.generate_resilience_report()`.

The seed's report (overall score, breaker counts and alerts, bulkhead utilization), then what
riprap adds: each breaker, the rate limiters, retry outcomes per operation, fallbacks, caches and
the dead-letter queues. Sections with nothing in them are left out; every list stops at `limit`
rows and says how many it left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["render"]


def _rows(
    items: Iterable[tuple[str, Any]], limit: int, line: Callable[[str, Any], str]
) -> list[str]:
    items = list(items)
    out = [line(name, value) for name, value in items[:limit]]
    if len(items) > limit:
        out.append(f"  ... and {len(items) - limit} more")
    return out


def _int(stats: Mapping[str, Any], key: str) -> int:
    value = stats.get(key)
    return int(value) if isinstance(value, (int, float)) else 0


def _float(stats: Mapping[str, Any], key: str) -> float:
    value = stats.get(key)
    return float(value) if isinstance(value, (int, float)) else 0.0


def render(metrics: Mapping[str, Any], *, limit: int = 20) -> str:
    """The report of `metrics` (what `ResilienceMonitor.snapshot()` returns)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(metrics["timestamp"]))
    health = metrics["overall_health"]
    out = [
        "=== riprap resilience report ===",
        f"Generated at: {when}",
        "",
        f"Overall Health Score: {health['score']:.2%} ({health['status'].upper()})",
        f"  circuit breakers {health['circuit_breaker_health']:.1%}, "
        f"bulkheads {health['bulkhead_health']:.1%}, "
        f"retries {health['retry_health']:.1%}",
        "",
    ]
    cb = metrics["circuit_breakers"]
    summary = cb["summary"]
    out += [
        "Circuit Breakers:",
        f"  Total: {summary['total_breakers']}",
        f"  Open: {summary['open_breakers']}",
        f"  Half-Open: {summary['half_open_breakers']}",
    ]
    out += _rows(
        cb["breakers"].items(),
        limit,
        lambda name, s: (
            f"  {name}: {s['state']}, {s['total_calls']} calls, "
            f"{s['total_failures']} failures, {s['total_rejected']} rejected, "
            f"window failure rate {s['failure_rate']:.1%}"
        ),
    )
    alerts = metrics["alerts"]
    if alerts:
        out.append("Alerts:")
        out += _rows(
            ((a["type"], a) for a in alerts), limit, lambda _, a: f"  - {a['message']}"
        )
    out.append("")
    if metrics["bulkheads"]:
        out.append("Resource Bulkheads:")
        out += _rows(
            metrics["bulkheads"].items(),
            limit,
            lambda name, s: (
                f"  {name}: {_float(s, 'utilization'):.1%} utilization, "
                f"{_float(s, 'rejection_rate'):.2%} rejection rate"
            ),
        )
        out.append("")
    if metrics["rate_limiters"]:
        out.append("Rate Limiters:")
        out += _rows(
            metrics["rate_limiters"].items(),
            limit,
            lambda name, s: (
                f"  {name}: {_int(s, 'admitted')} admitted "
                f"({_int(s, 'waited')} after waiting), {_int(s, 'rejected')} rejected"
                + (f", {_int(s, 'keys')} keys" if "keys" in s else "")
            ),
        )
        out.append("")
    retry = metrics["retry_patterns"]
    if retry["operations"]:
        out.append(
            f"Retries: {retry['total_operations']} calls, "
            f"{retry['success_rate']:.1%} succeeded, {retry['total_retries']} retries"
        )
        out += _rows(
            retry["operations"].items(),
            limit,
            lambda name, o: (
                f"  {name}: {o['calls']} calls, {o['success_rate']:.1%} succeeded, "
                f"{o['retries']} retries"
            ),
        )
        out.append("")
    fallback = metrics["fallback_patterns"]
    if fallback["strategies"]:
        out.append(
            f"Fallbacks: {fallback['calls']} calls, {fallback['primary_failures']} primary "
            f"failures, {fallback['fallback_successes']} answered by a fallback, "
            f"{fallback['cache_fallbacks']} by the cache, {fallback['default_fallbacks']} by "
            f"the default, {fallback['exhausted']} exhausted"
        )
        out.append("")
    if metrics["result_caches"]:
        out.append("Result Caches:")
        out += _rows(
            metrics["result_caches"].items(),
            limit,
            lambda name, s: (
                f"  {name}: {_int(s, 'size')} entries, {_int(s, 'hits')} hits, "
                f"{_int(s, 'misses')} misses"
            ),
        )
        out.append("")
    if metrics["dead_letter_queues"]:
        out.append("Dead-Letter Queues:")
        out += _rows(
            metrics["dead_letter_queues"].items(),
            limit,
            lambda name, s: f"  {name}: {_int(s, 'entries')} entries",
        )
        out.append("")
    return "\n".join(out).rstrip() + "\n"
