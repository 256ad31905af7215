"""The engine of a circuit breaker whose one state lives in Redis (`shared="state"`).

Every acquire, record, release, snapshot, reset and force-open is one script
(`scripts.BREAKER_*`) over two keys under one hash tag: `<prefix>:{<name>}:state` (a hash: the
state, its generation and incarnation, the open time, consecutive failures, the half-open gate)
and `...:window` (a hash of bucket counts). So the rules are the in-process breaker's, applied
atomically across processes, in whole microseconds. The engine has the methods of the
in-process `BreakerEngine` (plus async twins), so the public breaker's `with`, `call` and stats
work unchanged; a permit remembers the generation and incarnation it was issued in, so a late
report from before a transition, or from before the state vanished, moves nothing.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from .. import _breaker as facade
from .. import _validate as v
from .._errors import REJECTIONS, CircuitOpenError
from .._fork import track
from . import scripts
from .shared import Counters, Options, ms_ceil, us_ceil
from .storage import Script, StorageError

__all__ = ["UNCOUNTED", "Permit", "SharedEngine", "classify", "config_args", "now_ns"]

_ACQUIRE = Script(scripts.BREAKER_ACQUIRE)
_RECORD = Script(scripts.BREAKER_RECORD)
_RELEASE = Script(scripts.BREAKER_RELEASE)
_SNAPSHOT = Script(scripts.BREAKER_SNAPSHOT)
_RESET = Script(scripts.BREAKER_RESET)
_FORCE_OPEN = Script(scripts.BREAKER_FORCE_OPEN)

STATES = ("closed", "open", "half_open")
SUCCESS, FAILURE, IGNORED = "0", "1", "2"
_US = 1_000_000
_TOTALS = ("successes", "failures", "ignored", "cancelled", "rejected", "lost_trials")


def now_ns(clock: Any) -> int:
    """The breaker's clock in nanoseconds (monotonic unless a ManualClock)."""
    return clock.now_ns() if clock is not None else time.monotonic_ns()


def config_args(config: facade.CircuitBreakerConfig) -> tuple[str, ...]:
    """ARGV[3:12] of the breaker scripts: the configuration in whole microseconds."""
    timeout = us_ceil(max(1, v.secs_to_nanos(config.timeout)))
    span = us_ceil(max(1, v.secs_to_nanos(config.monitoring_window)))
    buckets = min(60, span)
    slow = (
        ""
        if config.slow_call_duration is None
        else repr(config.slow_call_rate_threshold)
    )
    ttl = ms_ceil((span + timeout) * 1000) + 1000
    numbers = (
        timeout,
        span // buckets,
        buckets,
        config.failure_threshold,
        config.minimum_calls,
        repr(float(config.failure_rate_threshold)),
        slow,
        config.half_open_max_calls,
        config.success_threshold,
        ttl,
    )
    return tuple(str(x) for x in numbers)


class Permit:
    """A call admitted by the shared state (hand it back once)."""

    __slots__ = ("generation", "incarnation", "returned", "start", "trial")

    def __init__(
        self, generation: Any, incarnation: Any, trial: bool, start: int
    ) -> None:
        self.generation = generation
        self.incarnation = incarnation
        self.trial = trial
        self.start = start
        self.returned = False

    @property
    def is_trial(self) -> bool:
        """Whether this is a half-open trial call."""
        return self.trial


#: The permit of a call admitted by "fail_open" while Redis was down: it records nothing.
UNCOUNTED = object()


def classify(
    exc: BaseException | None,
    expected: tuple[type[BaseException], ...],
    excluded: tuple[type[BaseException], ...],
) -> str | None:
    """SUCCESS, FAILURE or IGNORED; None for a control-flow exception.

    riprap's own rejections are ignored. An error raised while classifying carries `exc` as
    its context.
    """
    if exc is None:
        return SUCCESS
    if not isinstance(exc, Exception):
        return None
    try:
        if isinstance(exc, REJECTIONS):
            return IGNORED
        counted = isinstance(exc, expected) and not (
            excluded and isinstance(exc, excluded)
        )
    except BaseException as err:
        if err.__context__ is None:
            err.__context__ = exc
        raise
    return FAILURE if counted else IGNORED


class Observed:
    """The state this process last saw, and the transitions it reports to listeners."""

    __slots__ = ("_lock", "dispatch", "incarnation", "state")

    def __init__(self, dispatch: Callable[[str, str], None]) -> None:
        self._lock = threading.Lock()
        self.dispatch = dispatch
        self.state = "closed"
        self.incarnation: Any = None

    def saw(self, state: str, incarnation: Any, counters: Counters) -> None:
        with self._lock:
            old, self.state = self.state, state
            lost = self.incarnation is not None and incarnation != self.incarnation
            self.incarnation = incarnation
        if lost:
            counters.add("state_lost")
        if old != state:
            self.dispatch(old, state)


class SharedEngine:
    """The engine of a breaker whose one state lives in Redis (`shared="state"`)."""

    def __init__(
        self,
        opts: Options,
        config: facade.CircuitBreakerConfig,
        local: Any,
        dispatch: Callable[[str, str], None],
    ) -> None:
        self.opts = opts
        self.local = local
        self.config = config
        self.counters = Counters()
        self.dispatch = dispatch
        self.expected = config._expected
        self.excluded = config.excluded_exceptions
        self.slow = (
            None
            if config.slow_call_duration is None
            else max(1, v.secs_to_nanos(config.slow_call_duration))
        )
        self.keys = (opts.key("state"), opts.key("window"))
        self.config_args = config_args(config)
        self._after_fork()
        track(self)

    def _after_fork(self) -> None:
        """A forked child starts fresh: no totals, nothing observed, new locks.

        The shared state itself is in Redis and stays shared.
        """
        self.lifetime = dict.fromkeys(_TOTALS, 0)
        self.seen = Observed(self.dispatch)
        self._lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------------

    def args(self, *extra: str) -> tuple[str, ...]:
        token = str(random.getrandbits(52))
        return (self.opts.now_us(), token, *self.config_args, *extra)

    def count(self, field: str, n: int = 1) -> None:
        with self._lock:
            self.lifetime[field] += n

    def run(self, script: Script, *extra: str) -> Any:
        return self.opts.storage.run(script, self.keys, self.args(*extra))

    async def arun(self, script: Script, *extra: str) -> Any:
        return await self.opts.storage.arun(script, self.keys, self.args(*extra))

    def observe(self, state_code: Any, incarnation: Any) -> None:
        self.seen.saw(STATES[int(state_code)], incarnation, self.counters)

    def failed(self, error: StorageError) -> str:
        mode = self.opts.mode
        self.counters.failed(error, decided_here=mode != "local")
        return mode

    def rejected_by_storage(self, error: StorageError) -> CircuitOpenError:
        self.count("rejected")
        exc = CircuitOpenError(self.opts.name, 0.0)
        exc.__cause__ = error.__cause__
        return exc

    # -- acquire -----------------------------------------------------------------------------

    def admitted(self, reply: Any) -> Permit:
        """A permit, or a fresh CircuitOpenError, from an acquire reply."""
        self.observe(reply[1], reply[3])
        if int(reply[6]):
            self.count("lost_trials", int(reply[6]))
        if not int(reply[0]):
            self.count("rejected")
            raise CircuitOpenError(self.opts.name, int(reply[5]) / _US)
        return Permit(reply[2], reply[3], bool(int(reply[4])), now_ns(self.opts.clock))

    def fallback_acquire(self, error: StorageError) -> Any:
        mode = self.failed(error)
        if mode == "local":
            return self.local.acquire()
        if mode == "fail_open":
            return UNCOUNTED
        raise self.rejected_by_storage(error)

    def acquire(self) -> Any:
        """Admit a call (a permit to hand back once) or raise a fresh CircuitOpenError."""
        try:
            reply = self.run(_ACQUIRE)
        except StorageError as e:
            return self.fallback_acquire(e)
        return self.admitted(reply)

    async def aacquire(self) -> Any:
        try:
            reply = await self.arun(_ACQUIRE)
        except StorageError as e:
            return self.fallback_acquire(e)
        return self.admitted(reply)

    # -- record / release --------------------------------------------------------------------

    def _outcome(
        self, permit: Permit, exc: BaseException | None
    ) -> tuple[str, ...] | None:
        """The record script's extra arguments, or None when the permit is only released."""
        outcome = classify(exc, self.expected, self.excluded)
        if outcome is None:
            return None
        self.count(
            {SUCCESS: "successes", FAILURE: "failures", IGNORED: "ignored"}[outcome]
        )
        slow = (
            self.slow is not None
            and now_ns(self.opts.clock) - permit.start >= self.slow
        )
        return (permit.generation, permit.incarnation, outcome, "1" if slow else "0")

    def _take(self, permit: Any) -> bool:
        """Whether `permit` is a shared one not handed back yet (marking it handed back)."""
        if not isinstance(permit, Permit):
            return False
        with self._lock:
            if permit.returned:
                return False
            permit.returned = True
        return True

    def record(self, permit: Any, exc: BaseException | None = None) -> None:
        """Hands back a permit: None is a success, an exception is classified."""
        if permit is UNCOUNTED:
            return
        if not isinstance(permit, Permit):
            self.local.record(permit, exc)
            return
        if not self._take(permit):
            return
        extra = self._outcome(permit, exc)
        if extra is None:
            self._release(permit)
            return
        try:
            reply = self.run(_RECORD, *extra)
        except StorageError as e:
            self.failed(e)
            return
        self.observe(reply[0], reply[2])

    async def arecord(self, permit: Any, exc: BaseException | None = None) -> None:
        if permit is UNCOUNTED:
            return
        if not isinstance(permit, Permit):
            self.local.record(permit, exc)
            return
        if not self._take(permit):
            return
        extra = self._outcome(permit, exc)
        if extra is None:
            await self._arelease(permit)
            return
        try:
            reply = await self.arun(_RECORD, *extra)
        except StorageError as e:
            self.failed(e)
            return
        self.observe(reply[0], reply[2])

    def release(self, permit: Any) -> None:
        """Gives a permit back without an outcome (the call did not finish)."""
        if permit is UNCOUNTED:
            return
        if not isinstance(permit, Permit):
            self.local.release(permit)
        elif self._take(permit):
            self._release(permit)

    async def arelease(self, permit: Any) -> None:
        if permit is UNCOUNTED:
            return
        if not isinstance(permit, Permit):
            self.local.release(permit)
        elif self._take(permit):
            await self._arelease(permit)

    def _release(self, permit: Permit) -> None:
        self.count("cancelled")
        try:
            reply = self.run(_RELEASE, permit.generation, permit.incarnation)
        except StorageError as e:
            self.failed(e)
            return
        self.observe(reply[0], reply[2])

    async def _arelease(self, permit: Permit) -> None:
        self.count("cancelled")
        try:
            reply = await self.arun(_RELEASE, permit.generation, permit.incarnation)
        except StorageError as e:
            self.failed(e)
            return
        self.observe(reply[0], reply[2])

    # -- state, stats, operator actions ------------------------------------------------------

    @property
    def state(self) -> str:
        """The shared state's value string (a due OPEN -> HALF_OPEN happens here)."""
        try:
            reply = self.run(_SNAPSHOT)
        except StorageError as e:
            return self._fallback_state(e)
        self.observe(reply[0], reply[2])
        return STATES[int(reply[0])]

    def _fallback_state(self, error: StorageError) -> str:
        self.counters.failed(error, decided_here=False)
        mode = self.opts.mode
        if mode == "fail_open":
            return "closed"
        if mode == "fail_closed":
            return "open"
        return cast(str, self.local.state)

    def stats(self) -> dict[str, Any]:
        """A snapshot of the shared state, with this process's totals and counters."""
        try:
            reply = self.run(_SNAPSHOT)
        except StorageError as e:
            state = self._fallback_state(e)
            snapshot = dict(self.local.stats())
            snapshot["state"] = state
            return self.extras(snapshot)
        self.observe(reply[0], reply[2])
        return self.extras(self.snapshot(reply))

    def snapshot(self, reply: Any) -> dict[str, Any]:
        """The stats dict from a snapshot reply."""
        (successes, failures, slow, consecutive, in_flight, trial_successes) = (
            int(x) for x in reply[3:9]
        )
        opened, since, last_failure, retry = (int(x) for x in reply[9:13])
        now = now_ns(self.opts.clock) / 1e9
        calls = successes + failures
        t = dict(self.lifetime)
        return {
            "name": self.opts.name,
            "state": STATES[int(reply[0])],
            "failure_count": failures,
            "success_count": successes,
            "failure_rate": failures / calls if calls else 0.0,
            "last_failure_time": None if last_failure < 0 else now - last_failure / _US,
            "time_since_last_failure": None if last_failure < 0 else last_failure / _US,
            "total_calls": sum(t[k] for k in t if k != "lost_trials"),
            "consecutive_failures": consecutive,
            "window_calls": calls,
            "slow_call_count": slow,
            "slow_call_rate": slow / calls if calls else 0.0,
            "half_open_calls": in_flight,
            "half_open_successes": trial_successes,
            "opened_at": None if opened < 0 else now - opened / _US,
            "open_duration": 0.0 if since < 0 else since / _US,
            "retry_after": retry / _US,
            "total_successes": t["successes"],
            "total_failures": t["failures"],
            "total_ignored": t["ignored"],
            "total_cancelled": t["cancelled"],
            "total_rejected": t["rejected"],
            "total_lost_trials": t["lost_trials"],
        }

    def extras(
        self, stats: dict[str, Any], quorum: tuple[int, int] = (0, 0)
    ) -> dict[str, Any]:
        c = self.counters
        stats.update(
            storage=str(self.opts.storage),
            storage_errors=c.storage_errors,
            fallback_decisions=c.fallback_decisions,
            shared=self.mode_name,
            state_lost=c.state_lost,
            quorum_open=quorum[0],
            quorum_live=quorum[1],
        )
        return stats

    #: `shared=` of the breakers using this engine.
    mode_name = "state"

    def reset(self) -> None:
        """Close the shared breaker with an empty window (for every process)."""
        self._operator(_RESET)

    def force_open(self) -> None:
        """Open the shared breaker now (for every process)."""
        self._operator(_FORCE_OPEN)

    def _operator(self, script: Script) -> None:
        try:
            reply = self.run(script)
        except StorageError as e:
            # Operator actions report failure: silently acting on local state only would
            # leave the fleet in a state the operator did not ask for.
            self.failed(e)
            raise RuntimeError(
                f"circuit breaker {self.opts.name!r}: storage {self.opts.storage} failed"
            ) from e.__cause__
        self.observe(reply[0], reply[2])
