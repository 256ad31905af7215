"""The Prometheus families riprap exposes, built from one monitor snapshot, and their text form.

`families(snapshot)` turns a `riprap._monitor.Snapshot` into plain `Family` values. Two things
consume them: `riprap.metrics` (a prometheus_client collector) and `riprap serve`, which writes
the text exposition format itself (`render_text`), so the server needs no dependency.

Label cardinality is bounded: one series per named primitive (never per key of a keyed limiter)
and per retry operation, and at most `max_series` names per kind. Past the cap, the remaining
primitives of that kind are summed into one series labelled `__overflow__` (for breaker states:
how many of them are in each state), and `riprap_metrics_overflow{kind}` says how many were
folded. Two live primitives with one name are told apart by their labels (`db`, `db#2`; see
`riprap._registry`), so a scrape never holds duplicate series.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ._registry import OVERFLOW

__all__ = ["Family", "families", "render_text"]

Labels = tuple[tuple[str, str], ...]

STATES = ("closed", "open", "half_open")


@dataclasses.dataclass
class Family:
    """One metric family: `kind` is "gauge", "counter" or "histogram".

    `name` is the family's name without `_total`; `samples` are `(suffix, labels, value)`
    with the suffix (`_total`, `_bucket`, `_sum`, `_count`, or "") added to the name.
    """

    name: str
    kind: str
    help: str
    samples: list[tuple[str, Labels, float]] = dataclasses.field(default_factory=list)

    def add(self, labels: Labels, value: float, suffix: str | None = None) -> None:
        """Adds one sample (counters get `_total` unless told otherwise)."""
        if suffix is None:
            suffix = "_total" if self.kind == "counter" else ""
        self.samples.append((suffix, labels, float(value)))


def _num(stats: Mapping[str, Any], key: str) -> float:
    value = stats.get(key)
    return float(value) if isinstance(value, (int, float)) else 0.0


def _capped(
    items: Mapping[str, Any], max_series: int
) -> tuple[list[tuple[str, Any]], list[Any]]:
    """The first `max_series` items, and the values of the rest."""
    pairs = list(items.items())
    return pairs[:max_series], [v for _, v in pairs[max_series:]]


def _summed(stats: list[Mapping[str, Any]], keys: Iterable[str]) -> dict[str, float]:
    return {k: sum(_num(s, k) for s in stats) for k in keys}


def _breakers(snap: Any, max_series: int, out: dict[str, Family]) -> int:
    state = out["circuit_breaker_state"]
    failures = out["circuit_breaker_failures"]
    calls = out["circuit_breaker_calls"]
    rate = out["circuit_breaker_failure_rate"]
    moves = out["circuit_breaker_transitions"]
    outcomes = {
        "success": "total_successes",
        "failure": "total_failures",
        "ignored": "total_ignored",
        "cancelled": "total_cancelled",
        "rejected": "total_rejected",
    }
    head, rest = _capped(snap.breakers, max_series)
    for label, s in head:
        for st in STATES:
            state.add((("name", label), ("state", st)), s["state"] == st)
        failures.add((("name", label),), s["total_failures"])
        for outcome, key in outcomes.items():
            calls.add((("name", label), ("outcome", outcome)), _num(s, key))
        rate.add((("name", label),), s["failure_rate"])
        for (old, new), n in sorted(snap.breaker_transitions.get(label, {}).items()):
            moves.add((("name", label), ("from_state", old), ("to_state", new)), n)
    if rest:
        name = (("name", OVERFLOW),)
        for st in STATES:
            state.add((*name, ("state", st)), sum(s["state"] == st for s in rest))
        total = _summed(rest, outcomes.values())
        failures.add(name, total["total_failures"])
        for outcome, key in outcomes.items():
            calls.add((*name, ("outcome", outcome)), total[key])
    return len(rest)


def _limiters(snap: Any, max_series: int, out: dict[str, Family]) -> int:
    head, rest = _capped(snap.rate_limiters, max_series)
    keys = ("admitted", "rejected", "waited")
    rows = [(label, dict(s)) for label, s in head]
    if rest:
        rows.append((OVERFLOW, _summed(rest, (*keys, "keys"))))
    for label, s in rows:
        name = (("name", label),)
        out["rate_limiter_admitted"].add(name, _num(s, "admitted"))
        out["rate_limiter_rejected"].add(name, _num(s, "rejected"))
        out["rate_limiter_waited"].add(name, _num(s, "waited"))
        if "keys" in s:
            out["rate_limiter_keys"].add(name, _num(s, "keys"))
    return len(rest)


def _bulkheads(snap: Any, max_series: int, out: dict[str, Family]) -> int:
    head, rest = _capped(snap.bulkheads, max_series)
    rows = [(label, dict(s)) for label, s in head]
    if rest:
        total = _summed(rest, ("active_calls", "queued_calls", "rejected_calls"))
        total["utilization"] = sum(_num(s, "utilization") for s in rest) / len(rest)
        rows.append((OVERFLOW, total))
    for label, s in rows:
        res = (("resource", label),)
        out["bulkhead_active_calls"].add(res, _num(s, "active_calls"))
        out["bulkhead_queued_calls"].add(res, _num(s, "queued_calls"))
        out["bulkhead_rejected_calls"].add(res, _num(s, "rejected_calls"))
        out["bulkhead_utilization_ratio"].add(res, _num(s, "utilization"))
    return len(rest)


_ANSWERED_BY = {
    "primary": "primary_successes",
    "fallback": "fallback_successes",
    "cache": "cache_fallbacks",
    "default": "default_fallbacks",
    "exhausted": "exhausted",
}


def _fallbacks(snap: Any, max_series: int, out: dict[str, Family]) -> int:
    head, rest = _capped(snap.fallbacks, max_series)
    rows = [(label, dict(s)) for label, s in head]
    if rest:
        rows.append((OVERFLOW, _summed(rest, _ANSWERED_BY.values())))
    for label, s in rows:
        for answer, key in _ANSWERED_BY.items():
            out["fallback_calls"].add(
                (("name", label), ("answered_by", answer)), _num(s, key)
            )
    return len(rest)


def _caches(snap: Any, max_series: int, out: dict[str, Family]) -> int:
    head, rest = _capped(snap.result_caches, max_series)
    keys = ("hits", "misses", "evictions", "expirations", "size")
    rows = [(label, dict(s)) for label, s in head]
    if rest:
        rows.append((OVERFLOW, _summed(rest, keys)))
    for label, s in rows:
        name = (("name", label),)
        out["result_cache_hits"].add(name, _num(s, "hits"))
        out["result_cache_misses"].add(name, _num(s, "misses"))
        out["result_cache_evictions"].add(name, _num(s, "evictions"))
        out["result_cache_expirations"].add(name, _num(s, "expirations"))
        out["result_cache_entries"].add(name, _num(s, "size"))
    return len(rest)


def _dead_letters(snap: Any, max_series: int, out: dict[str, Family]) -> int:
    head, rest = _capped(snap.dead_letter_queues, max_series)
    keys = ("entries", "dropped_max_entries", "dropped_max_age")
    rows = [(label, dict(s)) for label, s in head]
    if rest:
        rows.append((OVERFLOW, _summed(rest, keys)))
    for label, s in rows:
        queue = (("queue", label),)
        out["dead_letter_entries"].add(queue, _num(s, "entries"))
        for reason in ("max_entries", "max_age"):
            out["dead_letter_dropped"].add(
                (*queue, ("reason", reason)), _num(s, f"dropped_{reason}")
            )
    return len(rest)


def _retries(
    snap: Any, max_series: int, out: dict[str, Family], bounds: list[float]
) -> int:
    head, rest = _capped(snap.retries, max_series)
    rows = [(op, s) for op, s in head]
    if rest:
        rows.append((OVERFLOW, _summed_retries(rest)))
    for op, s in rows:
        name = (("operation", op),)
        last = len(s["attempts"]) - 1
        for i, n in enumerate(s["attempts"]):
            if n or i == 0:
                attempt = f"{i + 1}+" if i == last else str(i + 1)
                out["retry_attempts"].add((*name, ("attempt", attempt)), n)
        out["retry_success"].add(name, s["successes"])
        out["retry_failures"].add(name, s["failures"])
        if s["count"]:
            hist = out["retry_duration_seconds"]
            cumulative = 0
            for bound, n in zip([*bounds, math.inf], s["buckets"], strict=True):
                cumulative += n
                hist.add((*name, ("le", _le(bound))), cumulative, "_bucket")
            hist.add(name, s["count"], "_count")
            hist.add(name, s["sum"], "_sum")
    return len(rest)


def _summed_retries(rest: list[Any]) -> dict[str, Any]:
    return {
        "attempts": [
            sum(col) for col in zip(*(s["attempts"] for s in rest), strict=True)
        ],
        "successes": sum(s["successes"] for s in rest),
        "failures": sum(s["failures"] for s in rest),
        "buckets": [
            sum(col) for col in zip(*(s["buckets"] for s in rest), strict=True)
        ],
        "sum": sum(s["sum"] for s in rest),
        "count": sum(s["count"] for s in rest),
    }


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


#: Every family: name (without `_total`), type, help.
FAMILIES: tuple[tuple[str, str, str], ...] = (
    (
        "circuit_breaker_state",
        "gauge",
        "1 for the state each circuit breaker is in, else 0",
    ),
    (
        "circuit_breaker_failures",
        "counter",
        "Calls a circuit breaker counted as failures",
    ),
    ("circuit_breaker_calls", "counter", "Calls a circuit breaker decided, by outcome"),
    ("circuit_breaker_failure_rate", "gauge", "Failure rate of a breaker's window"),
    ("circuit_breaker_transitions", "counter", "Circuit breaker state transitions"),
    (
        "retry_attempts",
        "counter",
        "Finished attempts of retried calls, by attempt number",
    ),
    ("retry_success", "counter", "Retried calls that finally succeeded"),
    ("retry_failures", "counter", "Retried calls that finally failed"),
    (
        "retry_duration_seconds",
        "histogram",
        "Duration of retried calls, sleeps included",
    ),
    ("bulkhead_active_calls", "gauge", "Calls holding a bulkhead slot"),
    ("bulkhead_queued_calls", "gauge", "Calls waiting for a bulkhead slot"),
    ("bulkhead_rejected_calls", "counter", "Calls a bulkhead rejected"),
    ("bulkhead_utilization_ratio", "gauge", "Active calls over a bulkhead's capacity"),
    ("rate_limiter_admitted", "counter", "Requests a rate limiter granted"),
    ("rate_limiter_rejected", "counter", "Requests a rate limiter refused"),
    ("rate_limiter_waited", "counter", "Granted requests that waited first"),
    ("rate_limiter_keys", "gauge", "Keys a keyed rate limiter tracks"),
    (
        "fallback_calls",
        "counter",
        "Calls of a fallback strategy, by what answered them",
    ),
    ("result_cache_hits", "counter", "Result cache hits"),
    ("result_cache_misses", "counter", "Result cache misses"),
    ("result_cache_evictions", "counter", "Entries evicted to make room"),
    ("result_cache_expirations", "counter", "Entries found stale"),
    ("result_cache_entries", "gauge", "Entries in a result cache"),
    ("dead_letter_entries", "gauge", "Entries in a dead-letter queue"),
    ("dead_letter_dropped", "counter", "Dead letters dropped by retention, by reason"),
    (
        "riprap_metrics_overflow",
        "gauge",
        "Primitives past the series cap, summed as __overflow__",
    ),
)


def empty_families() -> dict[str, Family]:
    """Every family, with no samples (for `describe()`)."""
    return {name: Family(name, kind, text) for name, kind, text in FAMILIES}


def families(snap: Any, *, max_series: int, bounds: list[float]) -> list[Family]:
    """The families of one snapshot; those with no samples are left out.

    Args:
        snap: A `riprap._monitor.Snapshot`.
        max_series: The most names shown apart per kind.
        bounds: The retry duration histogram's bucket bounds.
    """
    out = empty_families()
    folded = {
        "circuit_breaker": _breakers(snap, max_series, out),
        "rate_limiter": _limiters(snap, max_series, out),
        "bulkhead": _bulkheads(snap, max_series, out),
        "fallback": _fallbacks(snap, max_series, out),
        "result_cache": _caches(snap, max_series, out),
        "dead_letter_queue": _dead_letters(snap, max_series, out),
        "retry": _retries(snap, max_series, out, bounds),
    }
    for kind, n in folded.items():
        if n:
            out["riprap_metrics_overflow"].add((("kind", kind),), n)
    return [f for f in out.values() if f.samples]


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _value(v: float) -> str:
    if v == 0.0:
        return "0.0"
    if v != v:  # noqa: PLR0124 - NaN
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def render_text(fams: Iterable[Family]) -> str:
    """The Prometheus text exposition format (version 0.0.4) of `fams`."""
    lines = []
    texts: dict[Labels, str] = {}  # most label sets repeat across families
    for f in fams:
        shown = f"{f.name}_total" if f.kind == "counter" else f.name
        help_text = f.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {shown} {help_text}")
        lines.append(f"# TYPE {shown} {f.kind}")
        for suffix, labels, value in f.samples:
            label_text = texts.get(labels)
            if label_text is None:
                body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                label_text = texts[labels] = "{" + body + "}" if body else ""
            lines.append(f"{f.name}{suffix}{label_text} {_value(value)}")
    return "\n".join(lines) + "\n" if lines else ""
