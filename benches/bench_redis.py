"""Shared state on Redis: riprap's limiter and breaker next to limits and pybreaker, and the
decisions per second one client gets against a raw EVALSHA of a trivial script.

Needs `redis-server` on PATH (a throwaway server on 127.0.0.1 is started for the run). Two
views:

* the harness cases (`riprap/_cli/bench/redis.py`): microseconds each library adds to one raw
  EVALSHA round trip, in the comparison table printed at the end of the run;
* `test_decisions_per_second`: decisions per second, sync and async, with riprap's share of the
  raw rate (the target is >= 80 %), printed as its own table.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import riprap
from riprap._cli.bench import cases, harness
from riprap._cli.bench import redis as redis_cases
from riprap._cli.bench.harness import Case

pytestmark = pytest.mark.skipif(
    not redis_cases.available(), reason="needs redis-server on PATH and redis installed"
)

PARAMS = [
    pytest.param(case, impl, id=f"{case.key}-{impl}")
    for case, impl in cases.selected("redis")
]


@pytest.mark.parametrize(("case", "impl"), PARAMS)
def test_redis(run_case: Callable[[Case, str], None], case: Case, impl: str) -> None:
    run_case(case, impl)


def test_decisions_per_second(
    benchmark: pytest.FixtureDef,  # type: ignore[type-arg]
    capsys: pytest.CaptureFixture[str],
) -> None:
    rates = redis_cases.decisions_per_second(peers=riprap.backend() == "rust")
    lines = [
        "",
        f"decisions per second from one client on Redis ({riprap.backend()} backend)",
        f"machine: {harness.machine()}",
        "| path | sync /s | share of raw | async /s | share of raw |",
        "|---|---|---|---|---|",
    ]
    sync, aio = rates["sync"], rates["async"]
    raw = "raw EVALSHA (return 1)"
    rows = [
        (raw, raw),
        ("riprap try_acquire", "riprap acquire_async"),
        *[(k, k) for k in sync if k.startswith("limits")],
    ]
    for s_key, a_key in rows:
        label = s_key.replace("try_acquire", "try_acquire / acquire_async")
        lines.append(
            f"| {label} | {sync[s_key]:,.0f} | {sync[s_key] / sync[raw]:.0%} "
            f"| {aio[a_key]:,.0f} | {aio[a_key] / aio[raw]:.0%} |"
        )
    with capsys.disabled():
        print("\n".join(lines))
    benchmark.extra_info.update(rates=rates, backend=riprap.backend())  # type: ignore[attr-defined]
    benchmark.pedantic(lambda: None, rounds=1)  # type: ignore[attr-defined]
