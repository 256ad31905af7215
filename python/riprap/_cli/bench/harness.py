"""The benchmark harness: cases, a paired timer and the tables, for `riprap bench` and `benches/`.

Numbers are added nanoseconds over a bare call of the same function: every sample
times a loop of bare calls and a loop of protected calls back to back, and the reported value is
the median over samples of their difference. Ratios measured in one process are what matter; the
absolute numbers move with the machine's load.

A method the caller calls *besides* its own work (`limiter.try_acquire()`) is a whole call of
its own: for those cases (`Case.method`) each sample also times the loop with no call in it,
and the table shows the call's raw cost (everything the caller pays for `try_acquire()`) next to
its cost over an empty call, so the smaller number is never read as the whole price.

This module knows no case: each primitive's module (`retry`, `breaker`, `limiter`) builds its
own, and `cases.all_cases()` lists them. Both commands measure through `run_case`, so a case's
baseline is honoured by both.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

__all__ = [
    "Case",
    "Measured",
    "Result",
    "Thunk",
    "bare",
    "has",
    "machine",
    "measure",
    "quiet_loggers",
    "render_table",
    "results_in_subprocess",
    "run_case",
    "run_cases",
]

Thunk = Callable[[], object]


def bare() -> int:
    """The function every case is measured against."""
    return 1


def has(module: str) -> bool:
    """Whether a peer library is installed."""
    return importlib.util.find_spec(module) is not None


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmarked path: how to build each implementation's protected callable."""

    key: str
    title: str
    target_ns: float | None
    build: dict[str, Callable[[], Thunk]]
    needs: dict[str, str] = dataclasses.field(default_factory=dict)
    #: What each implementation is measured against (default: a bare call). A case whose
    #: harness does work of its own per call (choosing a key, say) measures against that same
    #: work with a no-op in place of the protected call, so only the protected call is counted.
    baselines: dict[str, Callable[[], Thunk]] = dataclasses.field(default_factory=dict)
    #: The protected thing is a method call made besides the caller's work (`try_acquire`):
    #: also report its raw cost, the whole call.
    method: bool = False
    #: For a method case, what the raw cost is measured against: the same per-call harness
    #: work without the call (default: nothing, an empty loop).
    raw_baselines: dict[str, Callable[[], Thunk]] = dataclasses.field(
        default_factory=dict
    )

    def baseline(self, impl: str) -> Thunk:
        """The callable `impl` is measured against."""
        build = self.baselines.get(impl)
        return build() if build is not None else bare

    def raw_baseline(self, impl: str) -> Thunk | None:
        """What the raw cost of `impl` is measured against; None: an empty loop."""
        build = self.raw_baselines.get(impl)
        return build() if build is not None else None

    def available(self) -> list[str]:
        """Implementations whose libraries are installed."""
        return [
            name
            for name in self.build
            if name not in self.needs or has(self.needs[name])
        ]


@dataclasses.dataclass(frozen=True)
class Result:
    """The median added cost of one implementation on one case."""

    case: str
    impl: str
    backend: str
    added_ns: float
    bare_ns: float
    samples: int
    #: For a method case, the whole call's cost (over an empty loop, or the raw baseline).
    raw_ns: float | None = None


def _timed_loop(fn: Thunk, n: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return time.perf_counter_ns() - t0


def _timed_empty_loop(n: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        pass
    return time.perf_counter_ns() - t0


@dataclasses.dataclass(frozen=True)
class Measured:
    """Medians over paired samples, in ns per call."""

    added: float  #: `fn()` over `baseline()`
    bare: float  #: `baseline()` itself (loop included)
    raw: float | None  #: `fn()` over the raw baseline, when one was asked for


def measure(
    fn: Thunk,
    baseline: Thunk = bare,
    *,
    raw: Thunk | bool = False,
    samples: int = 41,
    sample_ms: float = 4.0,
) -> Measured:
    """Median added ns of `fn()` over `baseline()` (paired samples), and the median baseline.

    With `raw` (True: an empty loop; or a callable doing the harness's own work per call) each
    sample also times that, and `Measured.raw` is `fn()`'s whole cost over it.
    """
    fn()  # warm up (first-call caches, imports)
    probe = max(_timed_loop(fn, 20) / 20, 1.0)
    inner = int(min(max(sample_ms * 1e6 / probe, 20), 50_000))
    added, bares, raws = [], [], []
    for i in range(samples):
        if i % 2:
            b = _timed_loop(baseline, inner)
            w = _timed_loop(fn, inner)
        else:
            w = _timed_loop(fn, inner)
            b = _timed_loop(baseline, inner)
        added.append((w - b) / inner)
        bares.append(b / inner)
        if raw is True:
            raws.append((w - _timed_empty_loop(inner)) / inner)
        elif raw is not False:
            raws.append((w - _timed_loop(raw, inner)) / inner)
    return Measured(
        statistics.median(added),
        statistics.median(bares),
        statistics.median(raws) if raws else None,
    )


def quiet_loggers() -> None:
    """Set the loggers of riprap and the retry peers to ERROR for the measurements.

    A log record costs what the logging module makes it cost, not what the library adds.
    """
    for name in ("riprap", "stamina", "tenacity", "backoff"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_case(
    case: Case, impl: str, *, samples: int = 41, sample_ms: float = 4.0
) -> tuple[Thunk, Result]:
    """Build and measure one implementation of one case; returns the callable and the result.

    The one way a case is measured, by `riprap bench` and `make bench` alike: against the
    case's baseline for `impl` (a bare call unless the case says otherwise).
    """
    import riprap

    fn = case.build[impl]()
    raw: Thunk | bool = False
    if case.method:
        raw = case.raw_baseline(impl) or True
    m = measure(fn, case.baseline(impl), raw=raw, samples=samples, sample_ms=sample_ms)
    return fn, Result(case.key, impl, riprap.backend(), m.added, m.bare, samples, m.raw)


def run_cases(
    cases: list[Case],
    *,
    quick: bool = False,
    impls: list[str] | None = None,
    keys: list[str] | None = None,
) -> list[Result]:
    """Measure every available implementation of `cases` in this process (with `run_case`)."""
    quiet_loggers()
    samples, sample_ms = (15, 2.0) if quick else (41, 4.0)
    results = []
    for case in cases:
        if keys is not None and case.key not in keys:
            continue
        for impl in case.available():
            if impls is not None and impl not in impls:
                continue
            _, result = run_case(case, impl, samples=samples, sample_ms=sample_ms)
            results.append(result)
    return results


def results_in_subprocess(
    backend: str, *, quick: bool, impls: list[str]
) -> list[Result]:
    """Run the cases for `impls` under another backend in a child interpreter."""
    env = dict(os.environ, RIPRAP_BACKEND=backend)
    args = [
        sys.executable,
        "-m",
        "riprap",
        "bench",
        "--json",
        "--only",
        ",".join(impls),
    ]
    if quick:
        args.append("--quick")
    out = subprocess.run(
        args, env=env, check=True, capture_output=True, text=True
    ).stdout
    return [Result(**r) for r in json.loads(out)]


def machine() -> str:
    """A one-line description of the machine, Python and build."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"CPython {platform.python_version()}, release build"
    )


def _fmt(ns: float) -> str:
    if ns >= 10_000:
        return f"{ns / 1000:,.0f} µs"
    if ns >= 1000:
        return f"{ns / 1000:.2f} µs"
    return f"{ns:.0f} ns"


def render_table(cases: list[Case], results: list[Result]) -> str:
    """Markdown tables of the added cost of `results`, one per primitive.

    `cases` give each row its title and target. Cases are grouped by the first word of their key
    (retry, breaker, limiter, keyed, bulkhead, cache, monitor); each table has a column for
    every implementation measured in it.
    """
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.key.split("_")[0], []).append(case)
    order = ["retry", "breaker", "limiter", "keyed", "bulkhead", "cache", "monitor"]
    ranked = sorted(groups, key=lambda g: order.index(g) if g in order else len(order))
    tables = (_table(groups[g], results) for g in ranked)
    return "\n\n".join(t for t in tables if t)


def _column(r: Result) -> str:
    return f"riprap ({r.backend})" if r.impl == "riprap" else r.impl


def _table(cases: list[Case], results: list[Result]) -> str:
    keys = {c.key for c in cases}
    mine = [r for r in results if r.case in keys]
    if not mine:
        return ""
    columns: list[str] = []
    for r in mine:
        if _column(r) not in columns:
            columns.append(_column(r))
    first = ["riprap (rust)", "riprap (python)", "hand-rolled"]
    columns.sort(
        key=lambda c: first.index(c) if c in first else len(first)
    )  # peers keep order
    head = ["path", "target", *columns]
    both = "riprap (rust)" in columns and "riprap (python)" in columns
    if both:
        head.append("python ÷ rust")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases:
        row = {_column(r): r for r in mine if r.case == case.key}
        if not row:
            continue
        rows: list[tuple[str, str, Callable[[Result], float | None]]] = [
            (
                case.title + (", over an empty call" if case.method else ""),
                "≤ " + _fmt(case.target_ns) if case.target_ns else "",
                lambda r: r.added_ns,
            )
        ]
        if case.method:
            rows.append((case.title + ", the whole call (raw)", "", lambda r: r.raw_ns))
        for title, target, value in rows:
            cells = [title, target]
            for c in columns:
                v = value(row[c]) if c in row else None
                cells.append(_fmt(v) if v is not None else "")
            if both:
                rust, py = row.get("riprap (rust)"), row.get("riprap (python)")
                a = value(rust) if rust else None
                b = value(py) if py else None
                ratio = b / a if a and b and a > 0 else None
                cells.append(f"{ratio:.1f}×" if ratio is not None else "")  # noqa: RUF001
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
