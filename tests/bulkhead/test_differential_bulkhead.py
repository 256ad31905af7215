"""Differential test: the Rust bulkhead and its pure-Python twin agree.

Both `BulkheadEngine`s are driven with the same random sequences of events, through the API
that never blocks (what async callers use): arrivals (lock-free first, then the slow path, some
re-entrant, some with a deadline), calls that end in success, failure, another layer's
rejection or a control-flow exception, timeouts recorded while the call keeps its slot, waiters
that claim their ticket or give up (also after a grant they have not collected), clock advances
and forks. After every event, what the caller saw (a permit, a ticket, the rejection message),
which waiters were woken and in what order, and the whole `get_stats()` dict must be identical,
for strict, shared and adaptive bulkheads. Runs once, in the rust pass of `make test`.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import riprap
from riprap import BulkheadRejectedError, _core, _fork, _reference

pytestmark = pytest.mark.skipif(
    riprap.backend() != "rust",
    reason="drives both cores directly; runs once, in the rust pass",
)

ENDINGS: dict[str, BaseException | None] = {
    "success": None,
    "failure": ConnectionError("down"),
    "ignored": riprap.CircuitOpenError("inner", 1.0),
    "cancelled": KeyboardInterrupt(),
}


class Side:
    """One backend: a clock, an engine, running permits, waiting tickets, wake-ups."""

    def __init__(self, core: Any, fields: dict[str, Any]) -> None:
        self.clock = core.ManualClock(fields.pop("start"))
        self.engine = core.BulkheadEngine(
            "diff",
            core.BulkheadConfig(**fields),
            clock=self.clock,
            ignored=(riprap.CircuitOpenError,),
        )
        self.running: list[Any] = []
        self.waiting: list[int] = []
        self.woken: list[int] = []
        self.fork = (
            _core.note_fork
            if core is _core
            else lambda: (_reference.note_fork(), _fork.renew_all())
        )

    def watch(self, ticket: int) -> None:
        self.engine._watch(ticket, lambda: self.woken.append(ticket))
        self.waiting.append(ticket)

    def do(self, event: tuple[Any, ...]) -> object:
        kind = event[0]
        try:
            if kind == "arrive":
                _, reentrant, deadline = event
                if not reentrant and deadline is None:
                    permit = self.engine.try_acquire()
                    if permit is not None:
                        self.running.append(permit)
                        return "fast"
                got = self.engine._acquire(reentrant, deadline)
                if isinstance(got, int):
                    self.watch(got)
                    return ("queued", got)
                self.running.append(got)
                return "admitted"
            if kind == "end":
                _, index, ending = event
                if not self.running:
                    return None
                permit = self.running.pop(index % len(self.running))
                self.engine.release(permit, ENDINGS[ending])
                return permit.returned
            if kind == "timeout":
                if self.running:
                    self.engine._timed_out(self.running[event[1] % len(self.running)])
            elif kind == "claim":
                if not self.waiting:
                    return None
                ticket = self.waiting[event[1] % len(self.waiting)]
                got = self.engine._claim(ticket)
                if got is not None:
                    self.waiting.remove(ticket)
                    self.engine._unwatch(ticket)
                    self.running.append(got)
                    return ("granted", ticket)
                return ("waiting", ticket)
            elif kind == "cancel":
                if not self.waiting:
                    return None
                ticket = self.waiting.pop(event[1] % len(self.waiting))
                self.engine._cancel(ticket)
                self.engine._unwatch(ticket)
                return ("cancelled", ticket)
            elif kind == "advance":
                self.clock.advance(event[1])
            elif kind == "fork":
                self.fork()
        except BulkheadRejectedError as e:
            if kind == "claim":
                self.waiting.remove(ticket)
            return ("rejected", str(e))
        return None


def random_config(rng: random.Random) -> dict[str, Any]:
    return {
        "start": rng.choice([0.0, rng.uniform(0, 1e6)]),
        "max_concurrent_calls": rng.choice([1, 2, 3, 5, 8]),
        "max_queue_size": rng.choice([0, 1, 2, 5, 20]),
        "timeout": rng.choice([0.01, 1.0, 30.0, rng.uniform(0.001, 10)]),
        "isolation_level": rng.choice(["strict", "shared", "adaptive", "adaptive"]),
        "max_wait": rng.choice([None, None, 0.0, 0.5, 2.0, rng.uniform(0, 5)]),
        "slow_call_duration": rng.choice([None, None, 1e-9, 0.2, 1.0]),
    }


def random_event(rng: random.Random) -> tuple[Any, ...]:
    r = rng.random()
    if r < 0.35:
        deadline = rng.choice([None, None, None, 0.0, 0.1, 0.5, 3.0, rng.uniform(0, 5)])
        return ("arrive", rng.random() < 0.1, deadline)
    if r < 0.6:
        return ("end", rng.randrange(8), rng.choice(list(ENDINGS)))
    if r < 0.65:
        return ("timeout", rng.randrange(8))
    if r < 0.77:
        return ("claim", rng.randrange(8))
    if r < 0.84:
        return ("cancel", rng.randrange(8))
    if r < 0.995:
        return ("advance", rng.choice([1e-9, 0.05, 0.3, 1.0, 2.5, rng.uniform(0, 3)]))
    return ("fork",)


def compare(fields: dict[str, Any], events: list[tuple[Any, ...]]) -> None:
    rust, ref = Side(_core, dict(fields)), Side(_reference, dict(fields))
    for step, event in enumerate(events):
        seen = (rust.do(event), ref.do(event))
        where = (step, event, fields)
        assert seen[0] == seen[1], where
        assert rust.woken == ref.woken, where
        assert rust.engine.get_stats() == ref.engine.get_stats(), where
        assert rust.woken == ref.woken, where  # get_stats expires waiters too
        assert rust.engine.current_limit == ref.engine.current_limit, where
        assert rust.clock.now_ns() == ref.clock.now_ns()


def test_ten_thousand_random_sequences_agree() -> None:
    rng = random.Random(20261205)
    for _ in range(10_000):
        fields = random_config(rng)
        events = [random_event(rng) for _ in range(rng.randint(1, 40))]
        compare(fields, events)


event = st.one_of(
    st.tuples(
        st.just("arrive"),
        st.booleans(),
        st.one_of(st.none(), st.sampled_from([0.0, 0.1, 1.0, 4.0])),
    ),
    st.tuples(st.just("end"), st.integers(0, 7), st.sampled_from(list(ENDINGS))),
    st.tuples(st.sampled_from(["timeout", "claim", "cancel"]), st.integers(0, 7)),
    st.tuples(st.just("advance"), st.floats(0, 5)),
    st.tuples(st.just("fork")),
)


@given(
    max_concurrent_calls=st.integers(1, 5),
    max_queue_size=st.integers(0, 6),
    timeout=st.floats(0.001, 10),
    isolation_level=st.sampled_from(["strict", "shared", "adaptive"]),
    max_wait=st.one_of(st.none(), st.floats(0, 5)),
    slow_call_duration=st.one_of(st.none(), st.floats(1e-9, 3)),
    events=st.lists(event, max_size=60),
)
def test_shrinkable_sequences_agree(
    events: list[tuple[Any, ...]], **fields: Any
) -> None:
    compare({"start": 0.0, **fields}, events)


def test_config_errors_are_identical() -> None:
    good = {k: v for k, v in random_config(random.Random(1)).items() if k != "start"}
    bad_values: dict[str, list[object]] = {
        "max_concurrent_calls": [
            0,
            -1,
            True,
            1.5,
            "3",
            None,
            10**9 + 1,
            2**70,
            -(2**200),
        ],
        "max_queue_size": [-1, False, 2.0, 10**12],
        "timeout": [0, -0.0, float("nan"), float("inf"), "1", None, 10**400],
        "isolation_level": ["", "Strict", 3, None],
        "max_wait": [-1e-9, float("nan"), float("-inf"), "x", True],
        "slow_call_duration": [0.0, -1.0, float("inf"), "x"],
    }
    for field, values in bad_values.items():
        for value in values:
            errors = []
            for core in (_core, _reference):
                with pytest.raises((TypeError, ValueError)) as info:
                    core.BulkheadConfig(**{**good, field: value})
                errors.append((type(info.value), str(info.value)))
            assert errors[0] == errors[1], (field, value)
            assert errors[0][1].startswith(field), errors[0]
    for n in (1, 4, 5, 9, 10, 99, 10**9):
        for level in ("strict", "shared", "adaptive"):
            fields = {**good, "max_concurrent_calls": n, "isolation_level": level}
            assert (
                _core.BulkheadConfig(**fields).capacity
                == _reference.BulkheadConfig(**fields).capacity
            )
