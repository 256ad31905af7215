"""Rate limiters: riprap (active backend) vs a hand-rolled token bucket, limits, pyrate-limiter
and aiolimiter, plus the keyed limiter's memory per key (RSS before/after 1,000,000 keys).

Each case is timed twice: by pytest-benchmark (its own statistics), and by riprap's paired timer
(added ns over a bare call, median of paired samples), which feeds the comparison table printed
at the end of the run.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import riprap
from riprap._cli.bench import cases, limiter
from riprap._cli.bench.harness import Case

PARAMS = [
    pytest.param(case, impl, id=f"{case.key}-{impl}")
    for case, impl in cases.selected("limiter", "keyed")
]


@pytest.mark.parametrize(("case", "impl"), PARAMS)
def test_limiter(run_case: Callable[[Case, str], None], case: Case, impl: str) -> None:
    run_case(case, impl)


def test_keyed_bytes_per_key(
    benchmark: pytest.FixtureDef,  # type: ignore[type-arg]
    capsys: pytest.CaptureFixture[str],
) -> None:
    per_key = limiter.keyed_bytes_per_key()
    benchmark.extra_info.update(bytes_per_key=per_key, backend=riprap.backend())  # type: ignore[attr-defined]
    with capsys.disabled():
        print(
            f"\nkeyed limiter, {limiter.KEYS:,} live int keys "
            f"({riprap.backend()} backend): {per_key:.1f} bytes per key (RSS)"
        )
    if riprap.backend() == "rust":
        assert per_key <= 100
    benchmark.pedantic(lambda: None, rounds=1)  # type: ignore[attr-defined]
