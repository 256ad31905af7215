"""Benchmark session: collect paired measurements and print the comparison table.

`make bench` runs this directory twice, first with `RIPRAP_BACKEND=python`, then with the Rust
backend; each run saves its numbers in `.bench/<backend>.json`, and the second run prints one
table with riprap on both backends next to the hand-rolled loop and the installed peers.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

import riprap
from riprap._cli.bench import cases, harness, output

RESULTS: list[harness.Result] = []
OUT = pathlib.Path(__file__).resolve().parent.parent / ".bench"


@pytest.fixture(autouse=True)
def _quiet_riprap() -> None:
    harness.quiet_loggers()


@pytest.fixture
def run_case(benchmark: Any) -> Callable[[harness.Case, str], None]:
    """Time one case with riprap's paired timer (for the table) and with pytest-benchmark."""

    def run(case: harness.Case, impl: str) -> None:
        fn, result = harness.run_case(case, impl)
        RESULTS.append(result)
        benchmark.extra_info.update(
            added_ns=result.added_ns,
            bare_ns=result.bare_ns,
            raw_ns=result.raw_ns,
            alloc_bytes=result.alloc_bytes,
            backend=result.backend,
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
            harness.Result(**r)
            for r in json.loads(other.read_text())
            if r["impl"] == "riprap"
        ]
    tr = terminalreporter
    tr.section(f"riprap: {output.HEADLINE}")
    tr.write_line(f"machine: {harness.machine()}; commit {_commit()}")
    tr.write_line("")
    for line in harness.render_table(cases.all_cases(), merged).splitlines():
        tr.write_line(line)
