"""The benchmark harness: cases, a paired timer and the tables, for `riprap bench` and `benches/`.

Numbers are added nanoseconds over a bare call of the same function: every sample
times a loop of bare calls and a loop of protected calls back to back, and the reported value is
the median over samples of their difference. Ratios measured in one process are what matter; the
absolute numbers move with the machine's load.

A method the caller calls *besides* its own work (`limiter.try_acquire()`) is a whole call of
its own: for those cases (`Case.method`) each sample also times the loop with no call in it,
and the table shows the call's raw cost (everything the caller pays for `try_acquire()`) next to
its cost over an empty call, so the smaller number is never read as the whole price.

Beside the time, each measurement counts the bytes a call allocates (`allocated`): tracemalloc
is switched on for a short loop of its own after the timed samples, so tracing never slows the
timing loop.

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
import tracemalloc
from collections.abc import Callable, Mapping

__all__ = [
    "Case",
    "Measured",
    "Result",
    "Thunk",
    "allocated",
    "bare",
    "column",
    "fmt_bytes",
    "grouped",
    "has",
    "machine",
    "measure",
    "planned",
    "quiet_loggers",
    "render_table",
    "results_in_subprocess",
    "run_case",
    "run_cases",
]

Thunk = Callable[[], object]

#: The fewest calls one timed loop makes. A call slower than a sample's time (a scrape of a
#: thousand primitives takes ~20 ms) is timed over this many calls: the clock's resolution is
#: far below it, and more calls per loop would only make the run longer.
MIN_LOOP = 5


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
    #: The modules a peer needs (one name, or a tuple when its column stacks several
    #: libraries); an implementation not listed needs nothing beyond riprap.
    needs: Mapping[str, str | tuple[str, ...]] = dataclasses.field(default_factory=dict)
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
    #: A relative target: riprap must cost no more than this implementation, measured in the
    #: same run (the table shows "≤ <impl>").
    target_impl: str | None = None

    def baseline(self, impl: str) -> Thunk:
        """The callable `impl` is measured against."""
        build = self.baselines.get(impl)
        return build() if build is not None else bare

    def raw_baseline(self, impl: str) -> Thunk | None:
        """What the raw cost of `impl` is measured against; None: an empty loop."""
        build = self.raw_baselines.get(impl)
        return build() if build is not None else None

    def installed(self, impl: str) -> bool:
        """Whether every library `impl` needs is installed."""
        needs = self.needs.get(impl, ())
        return all(has(m) for m in ((needs,) if isinstance(needs, str) else needs))

    def available(self) -> list[str]:
        """Implementations whose libraries are installed."""
        return [name for name in self.build if self.installed(name)]

    def missing(self) -> list[str]:
        """Peers this case would measure, whose libraries are not installed."""
        return [name for name in self.build if not self.installed(name)]


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
    #: Bytes a call allocates beyond its baseline (see `allocated`); None: not measured.
    alloc_bytes: float | None = None


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
    inner = int(min(max(sample_ms * 1e6 / probe, MIN_LOOP), 50_000))
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


def _peak_per_call(fn: Thunk, calls: int) -> float:
    """Median over `calls` calls of the traced memory's peak during the call above its start."""
    reset, traced = tracemalloc.reset_peak, tracemalloc.get_traced_memory
    peaks = []
    for _ in range(calls):
        # `start` first: the int it holds is then counted in the baseline's peak as in
        # `fn`'s, while a reset after it leaves out the tuple `traced()` builds.
        start = traced()[0]
        reset()
        fn()
        peaks.append(traced()[1] - start)
    return statistics.median(peaks)


def allocated(fn: Thunk, baseline: Thunk = bare, *, calls: int = 200) -> float:
    """Bytes `fn()` allocates per call beyond `baseline()`, measured with tracemalloc.

    For each of `calls` calls: the most memory traced while the call runs, above what was
    traced when it started; the median over the calls, less the same for `baseline()` (so the
    measuring's own allocations cancel), and never below 0. A call that allocates nothing
    (or only reuses CPython's free lists) counts 0; a call that allocates and frees an object
    counts that object's size; what only some calls allocate (a list that grows now and then)
    counts only if most calls do. Run it after the timing loop: tracing slows every allocation.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        fn()
        baseline()
        added = _peak_per_call(fn, calls) - _peak_per_call(baseline, calls)
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return max(0.0, added)


def quiet_loggers() -> None:
    """Set the loggers of riprap and the retry peers to ERROR for the measurements.

    A log record costs what the logging module makes it cost, not what the library adds.
    """
    for name in ("riprap", "stamina", "tenacity", "backoff"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_case(
    case: Case,
    impl: str,
    *,
    samples: int = 41,
    sample_ms: float = 4.0,
    alloc_ms: float = 60.0,
) -> tuple[Thunk, Result]:
    """Build and measure one implementation of one case; returns the callable and the result.

    The one way a case is measured, by `riprap bench` and `make bench` alike: against the
    case's baseline for `impl` (a bare call unless the case says otherwise). After the timed
    samples, the bytes per call are counted over a loop of about `alloc_ms` (5 to 200 calls).
    """
    import riprap

    fn = case.build[impl]()
    raw: Thunk | bool = False
    if case.method:
        raw = case.raw_baseline(impl) or True
    baseline = case.baseline(impl)
    m = measure(fn, baseline, raw=raw, samples=samples, sample_ms=sample_ms)
    per_call = max(m.bare + m.added, 1.0)
    calls = int(min(max(alloc_ms * 1e6 / per_call, 5), 200))
    alloc = allocated(fn, baseline, calls=calls)
    return fn, Result(
        case.key, impl, riprap.backend(), m.added, m.bare, samples, m.raw, alloc
    )


def planned(
    cases: list[Case],
    *,
    impls: list[str] | None = None,
    keys: list[str] | None = None,
) -> list[tuple[Case, str]]:
    """The (case, implementation) pairs `run_cases` measures, in order."""
    return [
        (case, impl)
        for case in cases
        if keys is None or case.key in keys
        for impl in case.available()
        if impls is None or impl in impls
    ]


def run_cases(
    cases: list[Case],
    *,
    quick: bool = False,
    impls: list[str] | None = None,
    keys: list[str] | None = None,
    progress: Callable[[Case, str], object] | None = None,
) -> list[Result]:
    """Measure every available implementation of `cases` in this process (with `run_case`).

    `progress(case, impl)` is called before each measurement.
    """
    quiet_loggers()
    samples, sample_ms, alloc_ms = (15, 2.0, 20.0) if quick else (41, 4.0, 60.0)
    results = []
    for case, impl in planned(cases, impls=impls, keys=keys):
        if progress is not None:
            progress(case, impl)
        _, result = run_case(
            case, impl, samples=samples, sample_ms=sample_ms, alloc_ms=alloc_ms
        )
        results.append(result)
    return results


def results_in_subprocess(
    backend: str, *, quick: bool, impls: list[str]
) -> list[Result]:
    """Run the cases for `impls` under another backend in a child interpreter.

    The child writes its results as JSON on its standard output; its progress display goes to
    the standard error it shares with this process.
    """
    env = dict(os.environ, RIPRAP_BACKEND=backend)
    args = [
        sys.executable,
        "-m",
        "riprap",
        "bench",
        "--json",
        "-",
        "--no-python-backend",
        "--only",
        ",".join(impls),
    ]
    if quick:
        args.append("--quick")
    out = subprocess.run(
        args, env=env, check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return [Result(**r) for r in json.loads(out)["results"]]


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


def fmt_bytes(n: float) -> str:
    """Bytes, short: `0 B`, `184 B`, `3.4 kB`, `12 MB`."""
    if n >= 10_000_000:
        return f"{n / 1e6:,.0f} MB"
    if n >= 10_000:
        return f"{n / 1e3:,.0f} kB"
    if n >= 1000:
        return f"{n / 1e3:.1f} kB"
    return f"{n:.0f} B"


#: The order of the tables, by the first word of a case's key.
GROUPS = [
    "retry",
    "breaker",
    "limiter",
    "keyed",
    "bulkhead",
    "pipeline",
    "cache",
    "monitor",
]

NOT_INSTALLED = "not installed"


def grouped(cases: list[Case]) -> list[list[Case]]:
    """`cases` grouped by the first word of their key (one table each), in table order."""
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.key.split("_")[0], []).append(case)
    ranked = sorted(
        groups, key=lambda g: GROUPS.index(g) if g in GROUPS else len(GROUPS)
    )
    return [groups[g] for g in ranked]


def render_table(
    cases: list[Case], results: list[Result], *, impls: list[str] | None = None
) -> str:
    """Markdown tables of the added cost of `results`, one per primitive.

    `cases` give each row its title and target. Cases are grouped by the first word of their key
    (retry, breaker, limiter, keyed, bulkhead, pipeline, cache, monitor); each table has a column
    for every implementation measured in it, and one saying "not installed" for each peer of
    its cases whose library is missing here (of `impls`, when given). A cell shows the added
    time per call, then the bytes a call allocates when they were measured.
    """
    tables = (_table(group, results, impls) for group in grouped(cases))
    return "\n\n".join(t for t in tables if t)


def column(r: Result) -> str:
    """The table column of a result: the implementation, riprap's with its backend."""
    return f"riprap ({r.backend})" if r.impl == "riprap" else r.impl


def _cell(value: float | None, alloc: float | None) -> str:
    if value is None:
        return ""
    if alloc is None:
        return _fmt(value)
    return f"{_fmt(value)}, {fmt_bytes(alloc)}"


def _target(case: Case) -> str:
    if case.target_ns:
        return "≤ " + _fmt(case.target_ns)
    if case.target_impl:
        return "≤ " + case.target_impl
    return ""


def _table(cases: list[Case], results: list[Result], impls: list[str] | None) -> str:
    keys = {c.key for c in cases}
    mine = [r for r in results if r.case in keys]
    if not mine:
        return ""
    columns: list[str] = []
    for r in mine:
        if column(r) not in columns:
            columns.append(column(r))
    missing = {
        (case.key, impl)
        for case in cases
        for impl in case.missing()
        if impls is None or impl in impls
    }
    for _, impl in sorted(missing):
        if impl not in columns:
            columns.append(impl)
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
        row = {column(r): r for r in mine if r.case == case.key}
        if not row:
            continue
        rows: list[tuple[str, str, Callable[[Result], float | None], bool]] = [
            (
                case.title + (", over an empty call" if case.method else ""),
                _target(case),
                lambda r: r.added_ns,
                True,
            )
        ]
        if case.method:
            rows.append(
                (case.title + ", the whole call (raw)", "", lambda r: r.raw_ns, False)
            )
        for title, target, value, with_alloc in rows:
            cells = [title, target]
            for c in columns:
                if c in row:
                    r = row[c]
                    cells.append(_cell(value(r), r.alloc_bytes if with_alloc else None))
                else:
                    cells.append(NOT_INSTALLED if (case.key, c) in missing else "")
            if both:
                rust, py = row.get("riprap (rust)"), row.get("riprap (python)")
                a = value(rust) if rust else None
                b = value(py) if py else None
                ratio = b / a if a and b and a > 0 else None
                cells.append(f"{ratio:.1f}×" if ratio is not None else "")  # noqa: RUF001
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
