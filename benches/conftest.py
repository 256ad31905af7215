"""Benchmark session: collect paired measurements and print the comparison table.

`make bench` runs this directory twice, first with `RIPRAP_BACKEND=python`, then with the Rust
backend; each run saves its numbers in `.bench/<backend>.json`, and the second run prints one
table with riprap on both backends next to the hand-rolled loop and the installed peers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

import riprap
from riprap import _bench

RESULTS: list[_bench.Result] = []
OUT = pathlib.Path(__file__).resolve().parent.parent / ".bench"


@pytest.fixture(autouse=True)
def _quiet_riprap() -> None:
    # Measured with the loggers at ERROR: a log record costs what logging makes it cost.
    for name in ("riprap", "stamina", "tenacity", "backoff"):
        logging.getLogger(name).setLevel(logging.ERROR)


@pytest.fixture
def run_case(benchmark: Any) -> Callable[[_bench.Case, str], None]:
    """Time one case with riprap's paired timer (for the table) and with pytest-benchmark."""

    def run(case: _bench.Case, impl: str) -> None:
        fn, result = _bench.run_case(case, impl)
        RESULTS.append(result)
        benchmark.extra_info.update(
            added_ns=result.added_ns, bare_ns=result.bare_ns, backend=result.backend
        )
        benchmark(fn)

    return run


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    backend = riprap.backend()
    OUT.mkdir(exist_ok=True)
    (OUT / f"{backend}.json").write_text(
        json.dumps([dataclasses.asdict(r) for r in RESULTS], indent=1)
    )
    merged = list(RESULTS)
    other = OUT / ("python.json" if backend == "rust" else "rust.json")
    if other.exists():
        merged += [
            _bench.Result(**r)
            for r in json.loads(other.read_text())
            if r["impl"] == "riprap"
        ]
    tr = terminalreporter
    tr.section("riprap: median added cost per call over a bare call (paired samples)")
    tr.write_line(f"machine: {_bench.machine()}; commit {_commit()}")
    tr.write_line("")
    for line in _bench.render_table(merged).splitlines():
        tr.write_line(line)
