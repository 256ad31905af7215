"""Hypothesis state machine for the bulkhead: acquire, release,
cancel, claim, timeout and clock advances in any order, on the active backend.

Invariants after every step: 0 <= active <= the limit (the 20 % extra of "shared" included; an
adaptive limit may fall below the calls already running, never the maximum); 0 <= queued <=
max_queue_size; nobody waits while a slot is free; waiters are woken first come first served.
At the end every call ends and every waiter gives up, and everything comes back.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from riprap import Bulkhead, BulkheadConfig, BulkheadRejectedError
from riprap.testing import ManualClock

EXCEPTIONS: list[BaseException | None] = [
    None,
    ConnectionError("down"),
    KeyboardInterrupt(),
]


class BulkheadMachine(RuleBasedStateMachine):
    clock: ManualClock
    bh: Bulkhead

    def __init__(self) -> None:
        super().__init__()
        self.running: list[Any] = []
        self.waiting: list[int] = []
        self.woken: list[int] = []
        self.max_queue = 0
        self.capacity = 0

    @initialize(
        n=st.integers(1, 5),
        queue=st.integers(0, 6),
        level=st.sampled_from(["strict", "shared", "adaptive"]),
        max_wait=st.one_of(st.none(), st.sampled_from([0.0, 0.5, 2.0])),
    )
    def build(self, n: int, queue: int, level: str, max_wait: float | None) -> None:
        self.clock = ManualClock()
        self.bh = Bulkhead(
            "machine",
            BulkheadConfig(
                max_concurrent_calls=n,
                max_queue_size=queue,
                isolation_level=level,
                max_wait=max_wait,
                timeout=1.0,
            ),
            clock=self.clock,
        )
        self.max_queue = queue
        self.capacity = n * 6 // 5 if level == "shared" else n

    def _wake(self, ticket: int) -> None:
        self.woken.append(ticket)

    @rule(
        reentrant=st.booleans(),
        deadline=st.one_of(st.none(), st.sampled_from([0.0, 0.3])),
    )
    def acquire(self, reentrant: bool, deadline: float | None) -> None:
        permit = None if reentrant or deadline is not None else self.bh.try_acquire()
        if permit is not None:
            self.running.append(permit)
            return
        try:
            got = self.bh._acquire(reentrant, deadline)
        except BulkheadRejectedError:
            return
        if isinstance(got, int):
            self.bh._watch(got, lambda t=got: self._wake(t))
            self.waiting.append(got)
        else:
            self.running.append(got)

    @precondition(lambda self: self.running)
    @rule(
        index=st.integers(0, 20),
        exc=st.sampled_from(EXCEPTIONS),
        dt=st.sampled_from([0, 0.1, 0.7]),
    )
    def release(self, index: int, exc: BaseException | None, dt: float) -> None:
        self.clock.advance(dt)
        self.bh.release(self.running.pop(index % len(self.running)), exc)

    @precondition(lambda self: self.running)
    @rule(index=st.integers(0, 20))
    def time_out(self, index: int) -> None:
        self.bh._timed_out(self.running[index % len(self.running)])

    @precondition(lambda self: self.waiting)
    @rule(index=st.integers(0, 20))
    def claim(self, index: int) -> None:
        ticket = self.waiting[index % len(self.waiting)]
        try:
            got = self.bh._claim(ticket)
        except BulkheadRejectedError:
            got = "rejected"
        if got is None:
            assert ticket not in self.woken
            return
        assert ticket in self.woken or got == "rejected"
        self.waiting.remove(ticket)
        self.bh._unwatch(ticket)
        if got != "rejected":
            self.running.append(got)

    @precondition(lambda self: self.waiting)
    @rule(index=st.integers(0, 20))
    def cancel(self, index: int) -> None:
        ticket = self.waiting.pop(index % len(self.waiting))
        self.bh._cancel(ticket)
        self.bh._unwatch(ticket)

    @rule(dt=st.sampled_from([0.0, 0.2, 1.0, 3.0]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @invariant()
    def counts_stay_in_bounds(self) -> None:
        if not hasattr(self, "bh"):
            return
        s = self.bh.get_stats()
        assert 0 <= s["active_calls"] <= self.capacity
        assert 1 <= s["current_limit"] <= self.capacity
        if s["config"]["isolation_level"] != "adaptive":
            assert s["active_calls"] <= s["current_limit"]
        assert 0 <= s["queued_calls"] <= self.max_queue
        if s["queued_calls"]:
            assert s["active_calls"] >= s["current_limit"], (
                "a waiter while a slot is free"
            )
        # Granted waiters hold their slot until they collect it.
        assert s["active_calls"] >= len(self.running)

    @invariant()
    def waiters_are_woken_in_arrival_order(self) -> None:
        assert all(a < b for a, b in zip(self.woken, self.woken[1:], strict=False))

    def teardown(self) -> None:
        if not hasattr(self, "bh"):
            return
        for ticket in self.waiting:
            self.bh._cancel(ticket)
            self.bh._unwatch(ticket)
        for permit in self.running:
            self.bh.release(permit)
        s = self.bh.get_stats()
        assert (s["active_calls"], s["queued_calls"]) == (0, 0)
        assert (
            s["total_calls"]
            == s["admitted_calls"] + s["rejected_calls"] + s["cancelled_waits"]
        )


BulkheadMachine.TestCase.settings = settings(
    BulkheadMachine.TestCase.settings, stateful_step_count=60
)
TestBulkheadMachine = BulkheadMachine.TestCase
