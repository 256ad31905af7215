"""Circuit breaker: riprap (active backend) vs a hand-rolled breaker, pybreaker, circuitbreaker,
purgatory and aiobreaker.

Each case is timed twice: by pytest-benchmark (its own statistics, in the usual table), and by
riprap's paired timer (added ns over a bare call, median of paired samples), which feeds the
comparison table printed at the end of the run. See `riprap/_bench_breaker.py` for the cases.
"""

from __future__ import annotations

import pytest

import riprap
from riprap import _bench

PEERS_ONCE = (
    riprap.backend() == "rust"
)  # peers do not depend on the backend: measure once

_bench.load_cases()
PARAMS = [
    pytest.param(case, impl, id=f"{case.key}-{impl}")
    for case in _bench.CASES
    if case.key.startswith("breaker")
    for impl in case.available()
    if impl == "riprap" or PEERS_ONCE
]


@pytest.mark.parametrize(("case", "impl"), PARAMS)
def test_breaker(
    benchmark: pytest.FixtureDef,  # type: ignore[type-arg]
    record: list[_bench.Result],
    case: _bench.Case,
    impl: str,
) -> None:
    fn = case.build[impl]()
    added, bare = _bench.measure(fn)
    record.append(_bench.Result(case.key, impl, riprap.backend(), added, bare, 41))
    benchmark.extra_info.update(added_ns=added, bare_ns=bare, backend=riprap.backend())  # type: ignore[attr-defined]
    benchmark(fn)  # type: ignore[operator]
