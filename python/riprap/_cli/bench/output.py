"""What `riprap bench` writes: the results as JSON, the tables as Markdown, a PNG chart.

Every output carries what a reader needs to trust the numbers: the machine line, the command that
reproduces them, riprap's version and the date. The chart needs matplotlib (the `plot` extra);
`require_matplotlib` says so before a run starts rather than after it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import Any

from .harness import Case, Result, column, fmt_bytes, grouped, render_table

__all__ = [
    "HEADLINE",
    "Run",
    "markdown",
    "plot",
    "require_matplotlib",
    "to_json",
]

HEADLINE = (
    "median added cost per call over a bare call (paired samples; a row that names another "
    "baseline is measured over it), then the bytes a call allocates (tracemalloc: its peak "
    "above the heap it started with, over the same baseline); a method's row (try_acquire) "
    "also shows the whole call (raw)"
)


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of `riprap bench`: its results and what reproduces them."""

    cases: list[Case]
    results: list[Result]
    machine: str
    command: str
    version: str
    seconds: float
    #: Implementations the run was limited to (`--only`), or None for all.
    impls: list[str] | None = None
    date: str = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    )

    def not_installed(self) -> dict[str, list[str]]:
        """Per case key, the peers it would measure whose libraries are missing here."""
        out: dict[str, list[str]] = {}
        for case in self.cases:
            missing = [
                i for i in case.missing() if self.impls is None or i in self.impls
            ]
            if missing:
                out[case.key] = missing
        return out


def to_json(run: Run) -> str:
    """The run as one JSON document: metadata, then every result."""
    return json.dumps(
        {
            "machine": run.machine,
            "command": run.command,
            "riprap": run.version,
            "date": run.date,
            "seconds": round(run.seconds, 1),
            "not_installed": run.not_installed(),
            "results": [dataclasses.asdict(r) for r in run.results],
        },
        indent=1,
    )


def markdown(run: Run) -> str:
    """The tables as Markdown, with the machine they ran on and the command to reproduce them."""
    return (
        f"Machine: {run.machine}; riprap {run.version}; {run.date}.\n"
        f"Command: `{run.command}` ({run.seconds:.0f} s).\n\n"
        f"The {HEADLINE}.\n\n"
        f"{render_table(run.cases, run.results, impls=run.impls)}\n"
    )


def require_matplotlib() -> str | None:
    """None if matplotlib imports, else what to tell the user."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return (
            "--plot needs matplotlib, which is not installed: "
            "pip install 'riprap[plot]' (or pip install matplotlib)"
        )
    return None


#: Bar colours: riprap on each backend, the hand-rolled baseline, the peers.
_COLOURS = {
    "riprap (rust)": "#c2410c",
    "riprap (python)": "#fdba74",
    "hand-rolled": "#6b7280",
}
_PEER = "#2563eb"


def plot(run: Run, path: str) -> None:
    """A PNG of horizontal bar charts, one per measured case, on a log scale of ns per call.

    Each chart shows every implementation measured on the case (its added time and bytes
    allocated written beside the bar) and the case's target as a dashed line.
    """
    from matplotlib.figure import Figure

    charts: list[tuple[Case, list[Result]]] = []
    for group in grouped(run.cases):
        for case in group:
            mine = [r for r in run.results if r.case == case.key]
            if mine:
                charts.append((case, _ordered(mine)))
    if not charts:
        raise ValueError("nothing was measured: there is nothing to plot")
    ncols = 2 if len(charts) > 1 else 1
    nrows = math.ceil(len(charts) / ncols)
    row_height = 1.0 + 0.28 * max(4, *(len(rs) for _, rs in charts))
    fig = Figure(
        figsize=(7.5 * ncols, 0.6 + nrows * row_height), dpi=100, layout="constrained"
    )
    fig.suptitle(
        f"riprap bench: added ns per call (log scale)\n{run.machine}; {run.date}",
        fontsize=10,
    )
    for i, (case, rs) in enumerate(charts):
        ax: Any = fig.add_subplot(nrows, ncols, i + 1)
        _chart(ax, case, rs)
    fig.savefig(path, format="png")


def _ordered(results: list[Result]) -> list[Result]:
    first = ["riprap (rust)", "riprap (python)", "hand-rolled"]
    return sorted(
        results,
        key=lambda r: first.index(column(r)) if column(r) in first else len(first),
    )


def _chart(ax: Any, case: Case, results: list[Result]) -> None:
    from matplotlib.ticker import NullFormatter

    labels = [column(r) for r in results]
    values = [max(r.added_ns, 1.0) for r in results]  # a log scale has no 0
    ys = list(range(len(results)))[::-1]
    ax.barh(
        ys,
        values,
        color=[_COLOURS.get(label, _PEER) for label in labels],
        height=0.7,
    )
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # labels on the decades only
    ax.set_yticks(ys, labels, fontsize=7)
    ax.set_title(case.title, fontsize=8, loc="left")
    ax.tick_params(axis="x", labelsize=7)
    for y, v, r in zip(ys, values, results, strict=True):
        text = _ns(r.added_ns)
        if r.alloc_bytes is not None:
            text += f", {fmt_bytes(r.alloc_bytes)}"
        ax.text(v * 1.08, y, text, va="center", fontsize=6.5)
    if case.target_ns:
        ax.axvline(case.target_ns, color="#dc2626", linestyle="--", linewidth=0.8)
    ax.set_xlim(left=max(min(values) / 3, 0.3), right=max(values) * 8)
    # At least four bar slots, so a chart of two bars does not draw them four times as thick.
    n = len(results)
    ax.set_ylim(n - max(n, 4) - 0.6, n - 0.4)


def _ns(ns: float) -> str:
    if ns >= 1000:
        return f"{ns / 1000:,.2f} µs"
    return f"{ns:.0f} ns"
