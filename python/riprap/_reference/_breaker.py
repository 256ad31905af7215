"""Reference twin of `rust/core/src/breaker.rs` and `rust/py/src/breaker.rs`.

`Breaker` is the state machine (times in integer nanoseconds, exactly like the core);
`BreakerConfig`, `BreakerPermit`, `BreakerEngine` and `BreakerCall` mirror the Rust binding's
classes name for name. The rules, in short (see the core's module docs for the why):

* CLOSED -> OPEN after a counted outcome when consecutive failures reach `failure_threshold`, or
  the window holds >= `minimum_calls` calls and their failure rate exceeds
  `failure_rate_threshold`, or (with `slow_call_duration`) their slow rate reaches
  `slow_call_rate_threshold`.
* OPEN rejects until `timeout` has passed; the next look finds HALF_OPEN.
* HALF_OPEN admits at most `half_open_max_calls` trial calls at once; `success_threshold`
  successes close it (clearing the window), any failure re-opens it; ignored outcomes and releases
  give the slot back; slots not re-admitted for `timeout` while all are taken are presumed lost.
* Every transition starts a new generation; outcomes of earlier generations count in the lifetime
  totals only.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from .._errors import REJECTIONS, CircuitOpenError
from .._fork import track
from .._validate import (
    U64_MAX,
    check_float,
    int_at_least,
    number,
    py_float,
    secs_to_nanos,
)
from ._awaitable import Coroutine, Drive, close_quietly
from ._clock import clock_of
from ._window import Counts, Window
from ._wrapper import AsyncNativeWrapper, NativeWrapper

__all__ = [
    "BreakerCall",
    "BreakerConfig",
    "BreakerEngine",
    "BreakerPermit",
    "Breaker",
    "Permit",
]

WINDOW_BUCKETS = 60
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
SUCCESS, FAILURE, IGNORED = "success", "failure", "ignored"

Transition = tuple[str, str]
_IDS = itertools.count()


def _check_at_most(field: str, value: float, maximum: float) -> None:
    if value > maximum:
        raise ValueError(
            f"{field} must be <= {py_float(maximum)}, got {py_float(value)}"
        )


class BreakerConfig:
    """A validated breaker configuration (the numeric fields of `CircuitBreakerConfig`)."""

    def __init__(
        self,
        *,
        failure_threshold: object,
        timeout: object,
        success_threshold: object,
        monitoring_window: object,
        failure_rate_threshold: object,
        minimum_calls: object,
        half_open_max_calls: object,
        slow_call_duration: object,
        slow_call_rate_threshold: object,
    ) -> None:
        # Types (and integer ranges) in declaration order, then float values in declaration
        # order: the same order as the Rust binding, so both name the same field first.
        self.failure_threshold = int_at_least("failure_threshold", failure_threshold, 1)
        self.timeout = number("timeout", timeout)
        self.success_threshold = int_at_least("success_threshold", success_threshold, 1)
        self.monitoring_window = number("monitoring_window", monitoring_window)
        self.failure_rate_threshold = number(
            "failure_rate_threshold", failure_rate_threshold
        )
        self.minimum_calls = int_at_least("minimum_calls", minimum_calls, 1)
        self.half_open_max_calls = int_at_least(
            "half_open_max_calls", half_open_max_calls, 1
        )
        self.slow_call_duration = (
            None
            if slow_call_duration is None
            else number("slow_call_duration", slow_call_duration)
        )
        self.slow_call_rate_threshold = number(
            "slow_call_rate_threshold", slow_call_rate_threshold
        )
        check_float("timeout", self.timeout, 0.0, False)
        check_float("monitoring_window", self.monitoring_window, 0.0, False)
        check_float("failure_rate_threshold", self.failure_rate_threshold, 0.0, True)
        _check_at_most("failure_rate_threshold", self.failure_rate_threshold, 1.0)
        if self.slow_call_duration is not None:
            check_float("slow_call_duration", self.slow_call_duration, 0.0, False)
        check_float(
            "slow_call_rate_threshold", self.slow_call_rate_threshold, 0.0, False
        )
        _check_at_most("slow_call_rate_threshold", self.slow_call_rate_threshold, 1.0)

    @property
    def bucket_width(self) -> float:
        """The width of one window bucket in seconds (the window's edge moves in these steps)."""
        span = max(secs_to_nanos(self.monitoring_window), 1)
        return (span // min(WINDOW_BUCKETS, span)) / 1e9


class Permit:
    """The core's permit: its breaker, generation, whether it is a trial, and its start."""

    __slots__ = ("generation", "owner", "start", "trial")

    def __init__(self, owner: int, generation: int, trial: bool, start: int) -> None:
        self.owner, self.generation, self.trial, self.start = (
            owner,
            generation,
            trial,
            start,
        )


class Decision(NamedTuple):
    """Admit (`permit` set, maybe a transition) or reject (`retry_after` ns)."""

    permit: Permit | None
    transition: Transition | None
    retry_after: int


class Breaker:
    """The state machine; every method takes the time as integer nanoseconds."""

    def __init__(self, config: BreakerConfig) -> None:
        self._id = next(_IDS)  # tells this breaker's permits from another's
        self.config = config
        self._timeout = max(secs_to_nanos(config.timeout), 1)
        self._slow = (
            None
            if config.slow_call_duration is None
            else max(secs_to_nanos(config.slow_call_duration), 1)
        )
        self._start(generation=0)
        track(self)

    def _start(self, generation: int) -> None:
        """Closed, with an empty window and no totals, in `generation`."""
        self._lock = threading.Lock()
        self._state = CLOSED
        self._opened_at = 0  # meaningful while OPEN
        self._in_flight = self._trial_successes = self._last_admit = 0  # HALF_OPEN
        self._generation = generation
        # One attribute: read without the lock, never torn.
        self._published = (CLOSED, generation)
        self.window = Window(
            max(secs_to_nanos(self.config.monitoring_window), 1), WINDOW_BUCKETS
        )
        self._consecutive = 0
        self._last_failure: int | None = None
        self._open_since: int | None = None
        self.totals = {
            "successes": 0,
            "failures": 0,
            "ignored": 0,
            "cancelled": 0,
            "rejected": 0,
            "lost_trials": 0,
        }

    def _after_fork(self) -> None:
        """Closed again, in a generation after every permit issued before the fork.

        A call admitted before the fork then moves nothing in the child.
        """
        self._start(generation=self._published[1] + 1)

    @property
    def measures_duration(self) -> bool:
        """Whether outcomes need the call's duration (`slow_call_duration` is set)."""
        return self._slow is not None

    # -- transitions (called with the lock held) -------------------------------------------

    def _new_generation(self) -> None:
        self._generation += 1
        self._published = (self._state, self._generation)

    def _poll(self, now: int) -> Transition | None:
        if self._state == OPEN and now - self._opened_at >= self._timeout:
            self._state = HALF_OPEN
            self._in_flight, self._trial_successes, self._last_admit = 0, 0, now
            self._new_generation()
            return (OPEN, HALF_OPEN)
        return None

    def _open(self, now: int) -> Transition:
        old = self._state
        self._state, self._opened_at = OPEN, now
        if self._open_since is None:
            self._open_since = now
        self._new_generation()
        return (old, OPEN)

    def _close(self) -> Transition:
        old = self._state
        self._state = CLOSED
        self.window.clear()
        self._consecutive = 0
        self._open_since = None
        self._new_generation()
        return (old, CLOSED)

    def _reopen_at(self) -> int:
        # Saturating like the core's u64 arithmetic.
        return min(self._opened_at + self._timeout, U64_MAX)

    def _trips(self) -> bool:
        c = self.config
        if self._consecutive >= c.failure_threshold:
            return True
        w = self.window.peek()
        if w.calls() < c.minimum_calls:
            return False
        return w.failure_rate() > c.failure_rate_threshold or (
            self._slow is not None and w.slow_rate() >= c.slow_call_rate_threshold
        )

    # -- the API ------------------------------------------------------------------------------

    def owns(self, permit: Permit) -> bool:
        """Whether `permit` was issued by this breaker."""
        return permit.owner == self._id

    def try_acquire_closed(self, start: int) -> Permit | None:
        """The fast path: a permit without the lock when CLOSED, else None."""
        state, generation = self._published
        return Permit(self._id, generation, False, start) if state == CLOSED else None

    def acquire(self, now: int) -> Decision:
        """Admit or reject a call at `now`."""
        with self._lock:
            transition = self._poll(now)
            if self._state == CLOSED:
                return Decision(
                    Permit(self._id, self._generation, False, now), transition, 0
                )
            if self._state == OPEN:
                self.totals["rejected"] += 1
                return Decision(None, None, max(self._reopen_at() - now, 0))
            if self._in_flight < self.config.half_open_max_calls:
                self._in_flight += 1
                self._last_admit = now
            elif now - self._last_admit >= self._timeout:
                # All slots taken and none re-admitted for a whole timeout: presume them lost.
                self.totals["lost_trials"] += self._in_flight
                self._in_flight, self._last_admit = 1, now
                self._new_generation()
            else:
                self.totals["rejected"] += 1
                return Decision(None, None, 0)
            return Decision(
                Permit(self._id, self._generation, True, now), transition, 0
            )

    def record(self, now: int, permit: Permit, outcome: str) -> Transition | None:
        """Records how an admitted call ended; returns the transition it caused."""
        if permit.owner != self._id:
            return None  # another breaker's permit: nothing to count here
        slow = self._slow is not None and now - permit.start >= self._slow
        with self._lock:
            current = permit.generation == self._generation
            if outcome == IGNORED:
                self.totals["ignored"] += 1
            elif outcome == SUCCESS:
                self.totals["successes"] += 1
            else:
                self.totals["failures"] += 1
                self._last_failure = now
            if not current:
                return None  # an earlier generation: counted, but moves nothing
            if outcome == IGNORED:
                if self._state == HALF_OPEN:
                    self._in_flight -= 1
                return None
            failed = outcome == FAILURE
            self.window.record(now, failed, slow)
            self._consecutive = self._consecutive + 1 if failed else 0
            if self._state == CLOSED:
                return self._open(now) if self._trips() else None
            if self._state == HALF_OPEN:
                if failed:
                    return self._open(now)
                self._in_flight -= 1
                self._trial_successes += 1
                if self._trial_successes >= self.config.success_threshold:
                    return self._close()
            return None

    def release(self, permit: Permit) -> None:
        """Gives back the permit of a call that did not finish."""
        if permit.owner != self._id:
            return
        with self._lock:
            self.totals["cancelled"] += 1
            if permit.generation == self._generation and self._state == HALF_OPEN:
                self._in_flight -= 1

    def state(self, now: int) -> tuple[str, Transition | None]:
        """The state at `now` and the transition made (a due OPEN -> HALF_OPEN)."""
        with self._lock:
            transition = self._poll(now)
            return self._state, transition

    def stats(self, now: int) -> tuple[dict[str, Any], Transition | None]:
        """A snapshot at `now` (ns values) and the transition made."""
        with self._lock:
            transition = self._poll(now)
            window: Counts = self.window.counts(now)
            is_open, half_open = self._state == OPEN, self._state == HALF_OPEN
            snapshot = {
                "state": self._state,
                "window": window,
                "consecutive_failures": self._consecutive,
                "half_open_in_flight": self._in_flight if half_open else 0,
                "half_open_successes": self._trial_successes if half_open else 0,
                "opened_at": self._opened_at if is_open else None,
                "last_failure": self._last_failure,
                "retry_after": max(self._reopen_at() - now, 0) if is_open else 0,
                "totals": dict(self.totals),
                # Derived here, as the core's Totals::calls and BreakerStats methods do.
                "total_calls": sum(
                    self.totals[k]
                    for k in (
                        "successes",
                        "failures",
                        "ignored",
                        "cancelled",
                        "rejected",
                    )
                ),
                "time_since_last_failure": None
                if self._last_failure is None
                else max(now - self._last_failure, 0),
                "open_duration": 0
                if self._open_since is None
                else max(now - self._open_since, 0),
            }
            return snapshot, transition

    def reset(self) -> Transition | None:
        """Back to CLOSED with an empty window; lifetime totals are kept."""
        with self._lock:
            old = self._state
            self.window.clear()
            self._consecutive = 0
            self._open_since = None
            self._state = CLOSED
            self._new_generation()
            return (old, CLOSED) if old != CLOSED else None

    def force_open(self, now: int) -> Transition | None:
        """Opens at `now` as if the breaker had tripped."""
        with self._lock:
            old = self._state
            transition = self._open(now)
            return transition if old != OPEN else None


class BreakerPermit:
    """Permission for one call through a breaker; hand it back once (record or release)."""

    def __init__(self, permit: Permit) -> None:
        self._permit: Permit | None = permit
        self._trial = permit.trial
        self._lock = threading.Lock()

    def _take(self, core: Breaker) -> Permit | None:
        """The permit (None if returned already); another breaker's is a ValueError."""
        with self._lock:
            if self._permit is not None and not core.owns(self._permit):
                raise ValueError("this permit belongs to another circuit breaker")
            permit, self._permit = self._permit, None
            return permit

    @property
    def is_trial(self) -> bool:
        """Whether this permit is a half-open trial call."""
        return self._trial

    @property
    def returned(self) -> bool:
        """Whether the permit was handed back already."""
        return self._permit is None


def _secs(ns: int | None) -> float | None:
    return None if ns is None else ns / 1e9


class BreakerEngine:
    """A circuit breaker: the state machine plus its clock, classification and hook."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        *,
        expected_exception: tuple[type[BaseException], ...],
        excluded_exceptions: tuple[type[BaseException], ...],
        clock: object,
        on_transition: Callable[[str, str], object] | None,
    ) -> None:
        self._name = name
        self._core = Breaker(config)
        self._clock = clock_of(clock)
        self._expected = expected_exception
        self._excluded = excluded_exceptions
        self._on_transition = on_transition

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self._name

    def _fire(self, transition: Transition | None) -> None:
        if transition is not None and self._on_transition is not None:
            self._on_transition(*transition)

    def _outcome(self, exc: BaseException) -> str | None:
        """FAILURE or IGNORED; None for a control-flow exception.

        riprap's own rejections (an inner limiter's, bulkhead's or breaker's) are ignored.
        Call it while `exc` is being handled, so an error it raises carries `exc` as context.
        """
        if not isinstance(exc, Exception):
            return None
        if isinstance(exc, REJECTIONS):
            return IGNORED
        counted = isinstance(exc, self._expected) and not (
            self._excluded and isinstance(exc, self._excluded)
        )
        return FAILURE if counted else IGNORED

    def _admit(self) -> Permit:
        decision = self._core.acquire(self._clock.now_ns())
        if decision.permit is None:
            raise CircuitOpenError(self._name, decision.retry_after / 1e9)
        try:
            self._fire(decision.transition)
        except BaseException:
            self._core.release(decision.permit)
            raise
        return decision.permit

    def _settle(self, permit: Permit, exc: BaseException | None) -> None:
        if exc is None:
            outcome = SUCCESS
        else:
            try:
                classified = self._outcome(exc)
            except BaseException:
                # Keep permits balanced (resilience4j/resilience4j#2324).
                self._core.release(permit)
                raise
            if classified is None:
                self._core.release(permit)
                return
            outcome = classified
        self._fire(self._core.record(self._clock.now_ns(), permit, outcome))

    def acquire(self) -> BreakerPermit:
        """Admit a call (a permit to hand back once) or raise a fresh CircuitOpenError."""
        return BreakerPermit(self._admit())

    def record(self, permit: BreakerPermit, exc: BaseException | None = None) -> None:
        """Hands back a permit: None is a success, an exception is classified.

        A second return is a no-op; another breaker's permit is a ValueError.
        """
        p = permit._take(self._core)
        if p is not None:
            self._settle(p, exc)

    def release(self, permit: BreakerPermit) -> None:
        """Gives a permit back without an outcome (the call did not finish)."""
        p = permit._take(self._core)
        if p is not None:
            self._core.release(p)

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs `func(*args, **kwargs)` through the breaker."""
        permit = self._admit()
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            self._settle(permit, exc)
            raise
        except BaseException:
            self._core.release(permit)
            raise
        self._settle(permit, None)
        return result

    def _run(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return self.call(func, *args, **kwargs)

    def _arun(
        self,
        func: Callable[..., Any],
        slow: Callable[..., Any] | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        return Coroutine(func, func(*args, **kwargs), BreakerGuard(self))

    @property
    def state(self) -> str:
        """The state's value string (a due OPEN -> HALF_OPEN happens here)."""
        state, transition = self._core.state(self._clock.now_ns())
        self._fire(transition)
        return state

    def stats(self) -> dict[str, Any]:
        """A snapshot (a due OPEN -> HALF_OPEN happens here)."""
        s, transition = self._core.stats(self._clock.now_ns())
        self._fire(transition)
        w: Counts = s["window"]
        totals = s["totals"]
        return {
            "name": self._name,
            "state": s["state"],
            "failure_count": w.failures,
            "success_count": w.successes,
            "failure_rate": w.failure_rate(),
            "last_failure_time": _secs(s["last_failure"]),
            "time_since_last_failure": _secs(s["time_since_last_failure"]),
            "total_calls": s["total_calls"],
            "consecutive_failures": s["consecutive_failures"],
            "window_calls": w.calls(),
            "slow_call_count": w.slow,
            "slow_call_rate": w.slow_rate(),
            "half_open_calls": s["half_open_in_flight"],
            "half_open_successes": s["half_open_successes"],
            "opened_at": _secs(s["opened_at"]),
            "open_duration": s["open_duration"] / 1e9,
            "retry_after": s["retry_after"] / 1e9,
            "total_successes": totals["successes"],
            "total_failures": totals["failures"],
            "total_ignored": totals["ignored"],
            "total_cancelled": totals["cancelled"],
            "total_rejected": totals["rejected"],
            "total_lost_trials": totals["lost_trials"],
        }

    def reset(self) -> None:
        """Back to CLOSED with an empty window (lifetime totals are kept)."""
        self._fire(self._core.reset())

    def force_open(self) -> None:
        """Opens the breaker now, as if it had tripped."""
        self._fire(self._core.force_open(self._clock.now_ns()))

    def __repr__(self) -> str:
        # Through `state`, so a due OPEN -> HALF_OPEN it performs is reported like any other.
        return f"<riprap.BreakerEngine {self._name!r} {self.state}>"


class BreakerGuard:
    """A breaker's part in one awaited call (twin of the binding's `BreakerGuard`)."""

    __slots__ = ("_engine", "_permit")

    def __init__(self, engine: BreakerEngine) -> None:
        self._engine = engine
        self._permit: Permit | None = None

    def start(self, inner: Any) -> Drive:
        """Take the permit and drive `inner` (or close it and raise a fresh CircuitOpenError)."""
        try:
            self._permit = self._engine._admit()
        except BaseException:
            close_quietly(inner)
            raise
        return Drive(inner)

    def _take(self) -> Permit | None:
        permit, self._permit = self._permit, None
        return permit

    def returned(self, value: Any) -> Any:
        """A success: hand the permit back with it."""
        permit = self._take()
        if permit is not None:
            self._engine._settle(permit, None)
        return value

    def raised(self, exc: BaseException) -> Any:
        """A failure (classified; control-flow exceptions only release): re-raise it."""
        permit = self._take()
        if permit is not None:
            self._engine._settle(permit, exc)
        raise  # noqa: PLE0704 - called while `exc` is being handled: re-raise it unchanged

    def abandon(self) -> None:
        """Dropped half-way: the permit comes back, uncounted."""
        permit = self._take()
        if permit is not None:
            self._engine._core.release(permit)


class BreakerCall(NativeWrapper[BreakerEngine]):
    """A sync function guarded by a circuit breaker."""

    __slots__ = ()
    _kind = "BreakerCall"

    @property
    def breaker_engine(self) -> BreakerEngine:
        """The breaker engine this function runs under."""
        return self._engine


class BreakerAsyncCall(AsyncNativeWrapper[BreakerEngine]):
    """A coroutine function guarded by a circuit breaker."""

    __slots__ = ()
    _kind = "BreakerAsyncCall"

    @property
    def breaker_engine(self) -> BreakerEngine:
        """The engine this function runs under."""
        return self._engine
