"""A stack of four policies (retry + breaker + limiter + bulkhead), success path, sync and async:
riprap's Pipeline (active backend) vs four nested hand-rolled wrappers, tenacity+pybreaker+limits
(sync), tenacity+aiobreaker+aiolimiter (async), pyresilience and hyx (async only).

Each case is timed twice: by pytest-benchmark (its own statistics, in the usual table), and by
riprap's paired timer (added ns over a bare call; the async row over a bare awaited call), which
feeds the comparison table printed at the end of the run. See `riprap/_cli/bench/pipeline.py`
for the stacks.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from riprap._cli.bench import cases
from riprap._cli.bench.harness import Case

PARAMS = [
    pytest.param(case, impl, id=f"{case.key}-{impl}")
    for case, impl in cases.selected("pipeline")
]


@pytest.mark.parametrize(("case", "impl"), PARAMS)
def test_pipeline(run_case: Callable[[Case, str], None], case: Case, impl: str) -> None:
    run_case(case, impl)
