"""Differential tests: the Rust core and the pure-Python reference make identical decisions.

Both cores are imported directly and driven with the same random inputs; every delay, decision and
counter must be equal (bit for bit for floats). These tests do not depend on RIPRAP_BACKEND, so
they run once, in the Rust pass of `make test`.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import riprap
from riprap import _core, _reference

pytestmark = pytest.mark.skipif(
    riprap.backend() != "rust",
    reason="drives both cores directly; runs once, in the rust pass",
)

STRATEGIES = ["exponential", "linear", "fixed", "decorrelated", "full_jitter"]


def random_schedule_kwargs(rng: random.Random) -> dict[str, Any]:
    base = rng.choice(
        [0.0, rng.uniform(0, 5), rng.uniform(1e-9, 1e-3), 10 ** rng.uniform(-3, 3)]
    )
    return {
        "strategy": rng.choice(STRATEGIES),
        "base_delay": base,
        "max_delay": base
        + rng.choice([0.0, rng.uniform(0, 100), 10 ** rng.uniform(0, 12)]),
        "exponential_base": rng.choice(
            [1.0, rng.uniform(1, 4), 10 ** rng.uniform(0, 300)]
        ),
        "jitter": rng.random() < 0.7,
        "jitter_range": rng.choice([0.0, 1.0, rng.random()]),
        "max_attempts": rng.choice([1, 3, 10, 2**40]),
        "deadline": rng.choice([None, rng.uniform(0.01, 100)]),
        "seed": rng.getrandbits(64),
    }


def random_attempt(rng: random.Random) -> int:
    return rng.choice(
        [
            rng.randint(1, 64),
            1023,
            1024,
            1025,
            2**53,
            2**63 - 1,
            2**63,
            rng.randint(1, 2**63),
            rng.randint(1, 2**70),
        ]
    )


def test_ten_thousand_random_policies_give_identical_delays() -> None:
    rng = random.Random(20261128)
    for case in range(10_000):
        kw = random_schedule_kwargs(rng)
        rust, ref = _core.RetrySchedule(**kw), _reference.RetrySchedule(**kw)
        attempt = random_attempt(rng)
        previous = rng.choice([None, rng.uniform(0, 1e6)])
        for _ in range(3):  # the streams stay in step, not just their first draw
            a = rust.compute_delay(attempt, previous)
            b = ref.compute_delay(attempt, previous)
            assert a == b, (case, kw, attempt, previous, a, b)
        elapsed, ra = (
            rng.uniform(0, 150),
            rng.choice([None, rng.uniform(-5, 500), float("nan")]),
        )
        fa = min(attempt, 2**64 - 1)
        assert rust.next_delay(fa, elapsed, previous, ra) == ref.next_delay(
            fa, elapsed, previous, ra
        ), (case, kw)


@given(
    strategy=st.sampled_from(STRATEGIES),
    base=st.floats(0, 1e3, allow_subnormal=True),
    extra=st.floats(0, 1e12),
    exp_base=st.floats(1, 1e300),
    jitter=st.booleans(),
    jitter_range=st.floats(0, 1),
    seed=st.integers(0, 2**64 - 1),
    attempts=st.lists(st.integers(1, 2**64), min_size=1, max_size=20),
)
def test_delay_streams_match(
    strategy: str,
    base: float,
    extra: float,
    exp_base: float,
    jitter: bool,
    jitter_range: float,
    seed: int,
    attempts: list[int],
) -> None:
    kw = {
        "strategy": strategy,
        "base_delay": base,
        "max_delay": base + extra,
        "exponential_base": exp_base,
        "jitter": jitter,
        "jitter_range": jitter_range,
        "max_attempts": 3,
        "deadline": None,
        "seed": seed,
    }
    rust, ref = _core.RetrySchedule(**kw), _reference.RetrySchedule(**kw)
    previous = None
    for n in attempts:
        a, b = rust.compute_delay(n, previous), ref.compute_delay(n, previous)
        assert a == b
        previous = a


class Failure(Exception):
    """An exception with optional status, Retry-After and headers."""

    def __init__(self, message: str, **attrs: Any) -> None:
        super().__init__(message)
        for k, v in attrs.items():
            setattr(self, k, v)


EXCEPTIONS = [
    lambda: ConnectionError("reset"),
    lambda: TimeoutError("slow"),
    lambda: ValueError("bad"),
    lambda: RuntimeError("Service Unavailable upstream"),
    lambda: Failure("http", status_code=503),
    lambda: Failure("http", status=404),
    lambda: Failure("http", status="503"),
    lambda: Failure("throttled", status_code=429, retry_after=2.5),
    lambda: Failure("throttled", status_code=429, headers={"Retry-After": "7"}),
    lambda: Failure("throttled", status_code=429, headers={"retry-after": "junk"}),
    lambda: KeyError("missing"),
    lambda: KeyboardInterrupt(),
]


@given(
    seed=st.integers(0, 2**64 - 1),
    max_attempts=st.integers(1, 6),
    deadline=st.one_of(st.none(), st.floats(0.5, 30)),
    budget=st.one_of(st.none(), st.tuples(st.floats(0, 1), st.floats(0, 2))),
    events=st.lists(
        st.tuples(st.integers(0, len(EXCEPTIONS)), st.floats(0, 5)),
        min_size=1,
        max_size=40,
    ),
)
def test_engine_decisions_match(
    seed: int,
    max_attempts: int,
    deadline: float | None,
    budget: tuple[float, float] | None,
    events: list[tuple[int, float]],
) -> None:
    logging.getLogger("riprap").setLevel(logging.CRITICAL)
    engines = []
    for core in (_core, _reference):
        clock = core.ManualClock()
        sched = core.RetrySchedule(
            strategy="exponential",
            base_delay=0.5,
            max_delay=20.0,
            exponential_base=2.0,
            jitter=True,
            jitter_range=0.2,
            max_attempts=max_attempts,
            deadline=deadline,
            seed=seed,
        )
        b = (
            core.RetryBudget(budget[0], budget[1], 10.0, clock=clock)
            if budget is not None
            else None
        )
        engine = core.RetryEngine(
            sched,
            retryable_exceptions=(ConnectionError, TimeoutError),
            status_codes=[503, 429],
            patterns=["service unavailable"],
            retry_on_result=lambda r: r is None,
            respect_retry_after=True,
            budget=b,
            clock=clock,
            on_retry=None,
            name="diff",
        )
        engines.append((clock, engine, b))
    starts = [e.start() for _, e, _ in engines]
    assert starts[0] == starts[1]
    attempt, previous = 1, None
    for index, advance in events:
        exc = EXCEPTIONS[index]() if index < len(EXCEPTIONS) else None
        decisions = []
        for clock, engine, _ in engines:
            clock.advance(advance)
            if exc is not None:
                assert engine.is_retryable(exc) == engines[0][1].is_retryable(exc)
            decisions.append(engine.decide(attempt, exc, starts[0], previous))
        assert decisions[0] == decisions[1], (attempt, exc, decisions)
        if engines[0][2] is not None:
            assert engines[0][2].get_stats() == engines[1][2].get_stats()
        if decisions[0] is None:
            attempt, previous = 1, None
            for _, engine, _ in engines:
                engine.start()
        else:
            attempt, previous = attempt + 1, decisions[0]


@given(
    ratio=st.floats(0, 2),
    floor=st.floats(0, 5),
    window=st.floats(0.001, 100),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["deposit", "withdraw", "advance", "back"]),
            st.floats(0, 20),
        ),
        max_size=200,
    ),
)
def test_budgets_match(
    ratio: float, floor: float, window: float, ops: list[tuple[str, float]]
) -> None:
    pairs = []
    for core in (_core, _reference):
        clock = core.ManualClock(50.0)
        pairs.append((clock, core.RetryBudget(ratio, floor, window, clock=clock)))
    for op, amount in ops:
        results = []
        for clock, budget in pairs:
            if op == "deposit":
                results.append(budget.deposit())
            elif op == "withdraw":
                results.append(budget.try_withdraw())
            elif op == "advance":
                clock.advance(amount)
            else:
                clock.set(max(clock.now() - amount, 0.0))
        assert len(set(results)) <= 1
        assert pairs[0][1].get_stats() == pairs[1][1].get_stats()


@given(
    seed=st.integers(0, 2**64 - 1),
    ops=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans(), st.integers(1, 40)),
        max_size=300,
    ),
)
def test_adaptive_matches(seed: int, ops: list[tuple[str, bool, int]]) -> None:
    kw = {
        "strategy": "exponential",
        "base_delay": 0.1,
        "max_delay": 30.0,
        "exponential_base": 2.0,
        "jitter": True,
        "jitter_range": 0.1,
        "seed": seed,
    }
    rust, ref = _core.AdaptiveBackoff(**kw), _reference.AdaptiveBackoff(**kw)
    for op, success, attempt in ops:
        rust.record(op, success)
        ref.record(op, success)
        assert rust.success_rate(op) == ref.success_rate(op)
        assert rust.delay(op, attempt) == ref.delay(op, attempt)
    assert len(rust) == len(ref)
