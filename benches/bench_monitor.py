"""Monitoring: the breaker's success path while scraped, the retry counters, one scrape.

Each case is timed by pytest-benchmark and by riprap's paired timer (added ns over a bare call,
median of paired samples), as in the other suites. See `riprap/_cli/bench/monitor.py`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from riprap._cli.bench import cases
from riprap._cli.bench.harness import Case

PARAMS = [
    pytest.param(case, impl, id=f"{case.key}-{impl}")
    for case, impl in cases.selected("monitor")
]


@pytest.mark.parametrize(("case", "impl"), PARAMS)
def test_monitor(run_case: Callable[[Case, str], None], case: Case, impl: str) -> None:
    run_case(case, impl)
