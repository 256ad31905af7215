"""Hypothesis stateful test of the breaker, on the active backend.

Rules begin calls (permits held across steps, so several trial calls are in flight), end them
with every kind of outcome, run slow calls, advance the clock, force_open and reset. After every
step the invariants hold:

* half-open calls in flight <= `half_open_max_calls` (and <= the permits actually held);
* the failure rate and the slow-call rate are in [0, 1];
* the window holds only the last `monitoring_window` seconds: its counts never exceed the
  outcomes recorded within that span since the window was last cleared;
* OPEN <=> `opened_at` is set (ahawkins/breaker#7); transitions chain and match `.state`;
* `total_calls` is the sum of the lifetime counters;
* liveness: with no permit held, a HALF_OPEN breaker admits a trial call (never stuck,
  App-vNext/Polly#1979).
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

from riprap import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from riprap.testing import ManualClock

SLOW = 2.0

configs = st.builds(
    CircuitBreakerConfig,
    failure_threshold=st.integers(1, 4),
    timeout=st.sampled_from([1.0, 5.0, 30.0]),
    success_threshold=st.integers(1, 3),
    # One bucket (1 ns), two buckets (2 ns), 30 one-ns buckets, and 60-bucket windows
    # (resilience4j/resilience4j#2379).
    monitoring_window=st.sampled_from([1e-9, 2e-9, 3e-8, 1.0, 10.0, 60.0, 300.0]),
    failure_rate_threshold=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    minimum_calls=st.integers(1, 5),
    half_open_max_calls=st.integers(1, 3),
    slow_call_duration=st.sampled_from([None, SLOW]),
    slow_call_rate_threshold=st.sampled_from([0.5, 1.0]),
    expected_exception=st.just(ConnectionError),
    excluded_exceptions=st.just((ConnectionResetError,)),
)

OUTCOMES: dict[str, BaseException | None] = {
    "success": None,
    "failure": ConnectionError("down"),
    "ignored": ValueError("not expected"),
    "excluded": ConnectionResetError("excluded"),
}


class BreakerMachine(RuleBasedStateMachine):
    """Drives one breaker through its engine's permits and checks the invariants."""

    @initialize(config=configs)
    def setup(self, config: CircuitBreakerConfig) -> None:
        self.config = config
        self.clock = ManualClock(1000.0)
        self.breaker = CircuitBreaker("machine", config, clock=self.clock)
        self.engine = self.breaker._engine
        self.permits: list[Any] = []
        # (time ns, failed, slow) of every success/failure handed back since the last clear.
        self.log: list[tuple[int, bool, bool]] = []
        self.last_state = "closed"
        self.breaker.add_listener(self.on_transition)

    def on_transition(self, name: str, old: CircuitState, new: CircuitState) -> None:
        assert old.value == self.last_state, (old, self.last_state)
        assert old is not new
        self.last_state = new.value
        if new is CircuitState.CLOSED:
            self.log.clear()  # the window is cleared when the breaker closes

    def record(self, permit: Any, outcome: str, started: int) -> None:
        self.engine.record(permit, OUTCOMES[outcome])
        if outcome in ("success", "failure"):
            now = self.clock.now_ns()
            slow = self.config.slow_call_duration is not None and (
                now - started >= round(SLOW * 1e9)
            )
            self.log.append((now, outcome == "failure", slow))

    @rule()
    def begin(self) -> None:
        try:
            self.permits.append((self.engine.acquire(), self.clock.now_ns()))
        except CircuitOpenError as e:
            rejected: CircuitOpenError | None = e
        else:
            rejected = None
        if rejected is not None:
            assert rejected.retry_after >= 0.0
            assert self.breaker.state is not CircuitState.CLOSED

    @precondition(lambda self: self.permits)
    @rule(index=st.integers(0, 100), outcome=st.sampled_from(list(OUTCOMES)))
    def end(self, index: int, outcome: str) -> None:
        permit, started = self.permits.pop(index % len(self.permits))
        self.record(permit, outcome, started)

    @precondition(lambda self: self.permits)
    @rule(index=st.integers(0, 100))
    def cancel(self, index: int) -> None:
        permit, _ = self.permits.pop(index % len(self.permits))
        self.engine.release(permit)

    @rule(
        lasts=st.sampled_from([0.0, 1.0, SLOW, 5.0]),
        outcome=st.sampled_from(list(OUTCOMES)),
    )
    def call(self, lasts: float, outcome: str) -> None:
        try:
            permit = self.engine.acquire()
        except CircuitOpenError:
            return
        started = self.clock.now_ns()
        self.clock.advance(lasts)
        self.record(permit, outcome, started)

    @rule(dt=st.sampled_from([1e-9, 0.01, 0.5, 1.0, 5.0, 30.0, 59.0, 61.0, 301.0]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule()
    def force_open(self) -> None:
        self.breaker.force_open()

    @rule()
    def to_half_open(self) -> None:
        self.breaker.force_open()
        self.clock.advance(self.config.timeout)
        assert self.breaker.state is CircuitState.HALF_OPEN

    @rule()
    def past_the_window(self) -> None:
        # With nothing recorded since, a whole window later the window is empty.
        self.clock.advance(self.config.monitoring_window)
        s = self.breaker.get_stats()
        assert (s["window_calls"], s["slow_call_count"]) == (0, 0)

    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        self.log.clear()

    @precondition(lambda self: not self.permits)
    @rule()
    def half_open_is_never_stuck(self) -> None:
        if self.breaker.state is CircuitState.HALF_OPEN:
            permit = self.engine.acquire()  # raises if stuck
            assert permit.is_trial
            self.engine.release(permit)

    @invariant()
    def invariants_hold(self) -> None:
        s = self.breaker.get_stats()
        c = self.config
        assert s["state"] == self.last_state
        assert 0.0 <= s["failure_rate"] <= 1.0
        assert 0.0 <= s["slow_call_rate"] <= 1.0
        assert s["half_open_calls"] <= c.half_open_max_calls
        assert s["half_open_calls"] <= len(self.permits)
        assert (s["state"] == "open") == (s["opened_at"] is not None)
        if s["state"] != "half_open":
            assert s["half_open_calls"] == 0
        # The window holds nothing older than monitoring_window.
        now, span = self.clock.now_ns(), round(c.monitoring_window * 1e9)
        recent = [e for e in self.log if now - e[0] < span]
        assert s["window_calls"] <= len(recent)
        assert s["failure_count"] <= sum(1 for e in recent if e[1])
        assert s["slow_call_count"] <= sum(1 for e in recent if e[2])
        assert s["total_calls"] == sum(
            s[k]
            for k in (
                "total_successes",
                "total_failures",
                "total_ignored",
                "total_cancelled",
                "total_rejected",
            )
        )


BreakerMachine.TestCase.settings = settings(
    BreakerMachine.TestCase.settings, stateful_step_count=100
)
TestBreakerMachine = BreakerMachine.TestCase
