"""Bulkhead: riprap (active backend) vs threading.Lock, threading.BoundedSemaphore,
asyncio.Semaphore and resilix.

Each case is timed twice: by pytest-benchmark (its own statistics, in the usual table), and by
riprap's paired timer (added ns over a bare call, median of paired samples), which feeds the
comparison table printed at the end of the run. See `riprap/_cli/bench/bulkhead.py` for the
cases.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from riprap._cli.bench import cases
from riprap._cli.bench.harness import Case

PARAMS = [
    pytest.param(case, impl, id=f"{case.key}-{impl}")
    for case, impl in cases.selected("bulkhead")
]


@pytest.mark.parametrize(("case", "impl"), PARAMS)
def test_bulkhead(run_case: Callable[[Case, str], None], case: Case, impl: str) -> None:
    run_case(case, impl)
