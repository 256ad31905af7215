"""Bulkhead: riprap (active backend) vs threading.Lock, threading.BoundedSemaphore,
asyncio.Semaphore and resilix.

Each case is timed twice: by pytest-benchmark (its own statistics, in the usual table), and by
riprap's paired timer (added ns over a bare call, median of paired samples), which feeds the
comparison table printed at the end of the run. See `riprap/_bench_bulkhead.py` for the cases.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from riprap import _bench

PARAMS = [
    pytest.param(case, impl, id=f"{case.key}-{impl}")
    for case, impl in _bench.selected("bulkhead")
]


@pytest.mark.parametrize(("case", "impl"), PARAMS)
def test_bulkhead(
    run_case: Callable[[_bench.Case, str], None], case: _bench.Case, impl: str
) -> None:
    run_case(case, impl)
