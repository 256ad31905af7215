"""Result cache: riprap's ResultCache (pure Python on both backends) vs a plain dict,
functools.lru_cache and cachetools (TTLCache, TTLCache behind a lock, LRUCache).

Each case is timed twice: by pytest-benchmark (its own statistics), and by riprap's paired timer
(added ns over the same key stream passed to a no-op), which feeds the comparison table printed
at the end of the run. See `riprap/_cli/bench/cache.py` for the cases.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from riprap._cli.bench import cases
from riprap._cli.bench.harness import Case

PARAMS = [
    pytest.param(case, impl, id=f"{case.key}-{impl}")
    for case, impl in cases.selected("cache")
]


@pytest.mark.parametrize(("case", "impl"), PARAMS)
def test_cache(run_case: Callable[[Case, str], None], case: Case, impl: str) -> None:
    run_case(case, impl)
