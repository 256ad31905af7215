"""Differential test: the Rust breaker and its pure-Python twin agree.

Both `BreakerEngine`s are driven with the same random sequences of events: calls that succeed,
fail, raise an ignored or excluded exception, raise a control-flow exception, run slow; trial
calls begun and ended later (so several are in flight at once); clock advances; state and stats
reads; `force_open` / `reset`; a transition hook that raises; a fork (each core starts fresh,
and calls admitted before it end after it). After every event the decision
(admitted, trial or not, `retry_after` to the nanosecond), the transitions reported, the state
and the whole `stats()` dict must be identical. Runs once, in the rust pass of `make test`.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import riprap
from riprap import CircuitOpenError, _core, _fork, _reference

pytestmark = pytest.mark.skipif(
    riprap.backend() != "rust",
    reason="drives both cores directly; runs once, in the rust pass",
)

EXCEPTIONS: dict[str, BaseException | None] = {
    "success": None,
    "failure": ConnectionError("down"),
    "timeout": TimeoutError("slow"),
    "ignored": ValueError("not expected"),
    "excluded": ConnectionResetError("excluded"),
    "cancelled": KeyboardInterrupt(),
}


class Side:
    """One backend: a clock, an engine, its transitions and the permits in flight."""

    def __init__(self, core: Any, fields: dict[str, Any]) -> None:
        self.clock = core.ManualClock(fields.pop("start"))
        self.transitions: list[tuple[str, str]] = []
        self.raise_next = False
        self.engine = core.BreakerEngine(
            "diff",
            core.BreakerConfig(**fields),
            expected_exception=(ConnectionError, TimeoutError),
            excluded_exceptions=(ConnectionResetError,),
            clock=self.clock,
            on_transition=self.hook,
        )
        self.permits: list[Any] = []
        # What a forked child runs first (the permits in `permits` stay: they were admitted
        # before the fork and end after it).
        self.fork = (
            _core.note_fork
            if core is _core
            else lambda: (_reference.note_fork(), _fork.renew_all())
        )

    def hook(self, old: str, new: str) -> None:
        self.transitions.append((old, new))
        if self.raise_next:
            self.raise_next = False
            raise RuntimeError("hook failed")

    def stats(self) -> object:
        """The stats, or the hook's error when reading them made a transition that raised."""
        try:
            return self.engine.stats()
        except RuntimeError as e:
            return ("hook raised", str(e))

    def do(self, event: tuple[Any, ...]) -> object:
        """Apply one event; returns what the caller saw (a comparable value)."""
        kind = event[0]
        try:
            if kind == "begin":
                permit = self.engine.acquire()
                self.permits.append(permit)
                return ("admit", permit.is_trial)
            if kind == "end":
                _, index, outcome = event
                if not self.permits:
                    return None
                permit = self.permits.pop(index % len(self.permits))
                if outcome == "cancelled":
                    self.engine.release(permit)
                else:
                    self.engine.record(permit, EXCEPTIONS[outcome])
                return permit.returned
            if kind == "call":
                _, lasts, outcome = event
                permit = self.engine.acquire()
                self.clock.advance(lasts)
                self.engine.record(permit, EXCEPTIONS[outcome])
                return ("called", permit.is_trial)
            if kind == "advance":
                self.clock.advance(event[1])
            elif kind == "state":
                return self.engine.state
            elif kind == "force_open":
                self.engine.force_open()
            elif kind == "reset":
                self.engine.reset()
            elif kind == "arm_hook":
                self.raise_next = True
            elif kind == "fork":
                self.fork()
        except CircuitOpenError as e:
            return ("reject", e.name, e.retry_after)
        except RuntimeError as e:
            return ("hook raised", str(e))
        return None


def random_config(rng: random.Random) -> dict[str, Any]:
    return {
        "start": rng.choice([0.0, rng.uniform(0, 1e6)]),
        "failure_threshold": rng.choice([1, 2, 3, 5, 2**70]),
        "timeout": rng.choice([1e-9, 0.5, 5.0, 60.0, rng.uniform(0.001, 100)]),
        "success_threshold": rng.choice([1, 2, 3]),
        "monitoring_window": rng.choice(
            [1e-9, 3e-8, 1.0, 10.0, 300.0, rng.uniform(0.001, 1000)]
        ),
        "failure_rate_threshold": rng.choice([0.0, 0.5, 1.0, rng.random()]),
        "minimum_calls": rng.choice([1, 2, 5, 10]),
        "half_open_max_calls": rng.choice([1, 2, 3]),
        "slow_call_duration": rng.choice([None, None, 1e-9, 0.5, 2.0]),
        "slow_call_rate_threshold": rng.choice([1.0, 0.5, rng.uniform(1e-6, 1.0)]),
    }


OUTCOMES = list(EXCEPTIONS)


def random_event(rng: random.Random) -> tuple[Any, ...]:
    r = rng.random()
    if r < 0.22:
        return ("call", rng.choice([0.0, 0.0, 0.3, 1.0, 2.5]), rng.choice(OUTCOMES))
    if r < 0.42:
        return ("begin",)
    if r < 0.62:
        return ("end", rng.randrange(8), rng.choice(OUTCOMES))
    if r < 0.82:
        dt = rng.choice(
            [1e-9, 0.1, 0.5, 1.0, 5.0, 30.0, 61.0, 400.0, rng.uniform(0, 100)]
        )
        return ("advance", dt)
    if r < 0.90:
        return ("state",)
    if r < 0.94:
        return ("force_open",)
    if r < 0.97:
        return ("reset",)
    if r < 0.99:
        return ("arm_hook",)
    return ("fork",)


def compare(fields: dict[str, Any], events: list[tuple[Any, ...]]) -> None:
    rust, ref = Side(_core, dict(fields)), Side(_reference, dict(fields))
    for step, event in enumerate(events):
        seen = (rust.do(event), ref.do(event))
        where = (step, event, fields)
        assert seen[0] == seen[1], where
        assert rust.transitions == ref.transitions, where
        assert rust.stats() == ref.stats(), where
        assert [p.is_trial for p in rust.permits] == [p.is_trial for p in ref.permits]
        assert rust.clock.now_ns() == ref.clock.now_ns()


def test_ten_thousand_random_sequences_agree() -> None:
    rng = random.Random(20261129)
    for _ in range(10_000):
        fields = random_config(rng)
        events = [random_event(rng) for _ in range(rng.randint(1, 40))]
        compare(fields, events)


event = st.one_of(
    st.tuples(
        st.just("call"),
        st.sampled_from([0.0, 0.3, 1.0, 2.5]),
        st.sampled_from(OUTCOMES),
    ),
    st.tuples(st.just("begin")),
    st.tuples(st.just("end"), st.integers(0, 7), st.sampled_from(OUTCOMES)),
    st.tuples(st.just("advance"), st.floats(0, 500)),
    st.tuples(st.sampled_from(["state", "force_open", "reset", "arm_hook", "fork"])),
)


@given(
    failure_threshold=st.integers(1, 4),
    timeout=st.floats(1e-9, 100),
    success_threshold=st.integers(1, 3),
    monitoring_window=st.floats(1e-9, 1000),
    failure_rate_threshold=st.floats(0, 1),
    minimum_calls=st.integers(1, 6),
    half_open_max_calls=st.integers(1, 3),
    slow_call_duration=st.one_of(st.none(), st.floats(1e-9, 3)),
    slow_call_rate_threshold=st.floats(1e-9, 1),
    events=st.lists(event, max_size=60),
)
def test_shrinkable_sequences_agree(
    events: list[tuple[Any, ...]], **fields: Any
) -> None:
    compare({"start": 0.0, **fields}, events)


def test_config_errors_are_identical() -> None:
    good = {k: v for k, v in random_config(random.Random(1)).items() if k != "start"}
    bad_values: dict[str, list[object]] = {
        "failure_threshold": [0, -1, True, 1.5, "3", -(2**200)],
        "timeout": [0, -0.0, float("nan"), float("inf"), "1", None, 10**400],
        "success_threshold": [0, False],
        "monitoring_window": [0.0, -5, float("-inf")],
        "failure_rate_threshold": [-1e-9, 1.0000001, float("nan")],
        "minimum_calls": [0, 2.0],
        "half_open_max_calls": [0, None],
        "slow_call_duration": [0.0, -1.0, float("inf"), "x"],
        "slow_call_rate_threshold": [0.0, 1.5, True],
    }
    for field, values in bad_values.items():
        for value in values:
            errors = []
            for core in (_core, _reference):
                with pytest.raises((TypeError, ValueError)) as info:
                    core.BreakerConfig(**{**good, field: value})
                errors.append((type(info.value), str(info.value)))
            assert errors[0] == errors[1], (field, value)
            assert errors[0][1].startswith(field), errors[0]
    for core in (_core, _reference):
        assert (
            core.BreakerConfig(**good).bucket_width
            == _core.BreakerConfig(**good).bucket_width
        )
