"""Reference twin of `rust/py/src/bulkhead.rs` (and `bulkhead/waiting.rs`).

`BulkheadConfig`, `BulkheadPermit` and `BulkheadEngine` mirror the Rust binding's classes name
for name (`BulkheadCall` and `BulkheadAsyncCall` are in `_bulkhead_call.py`), over the state
machine in `_bulkhead_core.py`. Sync waiters wait on an event that the release handing them a
slot sets (in slices of at most 50 ms, so Ctrl-C is seen); async waiters are woken through the
callback they registered. A thread-local list remembers which bulkheads this thread holds slots
of, so a call that would wait for a second slot of the same bulkhead is rejected instead of
deadlocking.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from typing import Any

from .._deadlines import exceeded, remaining
from .._errors import BulkheadRejectedError
from .._fork import track
from .._validate import (
    check_float,
    choice,
    int_in,
    number,
    optional_number,
    secs_to_nanos,
)
from ._awaitable import Coroutine, close_quietly
from ._bulkhead_core import (
    CANCELLED,
    FAILURE,
    IGNORED,
    MAX_COUNT,
    SUCCESS,
    BulkheadCore,
    Rejection,
    Slot,
)
from ._clock import ManualClock, Monotonic, clock_of

__all__ = ["BulkheadConfig", "BulkheadEngine", "BulkheadPermit"]

ISOLATION_LEVELS = ("strict", "shared", "adaptive")


class BulkheadConfig:
    """A validated bulkhead configuration (the fields of `riprap.BulkheadConfig`)."""

    def __init__(
        self,
        *,
        max_concurrent_calls: object,
        max_queue_size: object,
        timeout: object,
        isolation_level: object,
        max_wait: object,
        slow_call_duration: object,
    ) -> None:
        # Types (with the integer ranges and the level's name) in declaration order, then the
        # float values in declaration order: the same order as the Rust binding.
        self.max_concurrent_calls = int_in(
            "max_concurrent_calls", max_concurrent_calls, 1, MAX_COUNT
        )
        self.max_queue_size = int_in("max_queue_size", max_queue_size, 0, MAX_COUNT)
        self.timeout = number("timeout", timeout)
        self.isolation_level = choice(
            "isolation_level", isolation_level, ISOLATION_LEVELS
        )
        self.max_wait = optional_number("max_wait", max_wait)
        self.slow_call_duration = optional_number(
            "slow_call_duration", slow_call_duration
        )
        check_float("timeout", self.timeout, 0.0, False)
        if self.max_wait is not None:
            check_float("max_wait", self.max_wait, 0.0, True)
        if self.slow_call_duration is not None:
            check_float("slow_call_duration", self.slow_call_duration, 0.0, False)

    @property
    def capacity(self) -> int:
        """The most calls admitted at once (20 % more for "shared", rounded down)."""
        n = self.max_concurrent_calls
        return n * 6 // 5 if self.isolation_level == "shared" else n


class BulkheadPermit:
    """One slot of a bulkhead; hand it back once with `release`."""

    def __init__(self, slot: Slot) -> None:
        self._slot: Slot | None = slot
        self._lock = threading.Lock()

    def _check(self, core: BulkheadCore) -> None:
        if self._slot is not None and not core.owns(self._slot):
            raise ValueError("this permit belongs to another bulkhead")

    def _take(self, core: BulkheadCore) -> Slot | None:
        with self._lock:
            self._check(core)
            slot, self._slot = self._slot, None
            return slot

    @property
    def returned(self) -> bool:
        """Whether the permit was handed back already."""
        return self._slot is None


class _Held(threading.local):
    """`(bulkhead id, slot)` of every slot this thread holds (None: a decorated call)."""

    def __init__(self) -> None:
        self.slots: list[tuple[int, Slot | None]] = []


_HELD = _Held()


def _hold(bulkhead: int, slot: Slot | None) -> None:
    _HELD.slots.append((bulkhead, slot))


def _unhold(bulkhead: int) -> None:
    slots = _HELD.slots
    for i in range(len(slots) - 1, -1, -1):
        if slots[i][0] == bulkhead and slots[i][1] is None:
            del slots[i]
            return


def _take_slot(bulkhead: int) -> Slot | None:
    slots = _HELD.slots
    for i in range(len(slots) - 1, -1, -1):
        b, slot = slots[i]
        if b == bulkhead and slot is not None:
            del slots[i]
            return slot
    return None


def _holds(bulkhead: int) -> bool:
    return any(b == bulkhead for b, _ in _HELD.slots)


class _Wakers:
    """Callbacks that wake waiters, by ticket (a forked child starts with none)."""

    def __init__(self) -> None:
        self._after_fork()
        track(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], object]] = {}

    def watch(self, ticket: int, callback: Callable[[], object]) -> None:
        with self._lock:
            self._callbacks[ticket] = callback

    def unwatch(self, ticket: int) -> None:
        with self._lock:
            self._callbacks.pop(ticket, None)

    def wake(self, tickets: list[int]) -> None:
        if not tickets:
            return
        with self._lock:
            callbacks = [self._callbacks[t] for t in tickets if t in self._callbacks]
        for callback in callbacks:
            try:
                callback()
            except Exception:  # its loop is closed: that waiter is gone
                continue


def _rejected(
    name: str, why: Rejection, max_wait: float | None
) -> BulkheadRejectedError:
    if why.reason == "queue_full":
        reason = "every slot is busy and the queue is full"
    elif why.reason == "reentrant":
        reason = (
            "the caller already holds a slot of this bulkhead, and waiting for another "
            "could deadlock"
        )
    elif why.reason == "deadline" and why.left == 0:
        reason = "the caller's deadline has passed"
    elif why.reason == "deadline":
        expected = (why.expected_wait or 0) / 1e9
        reason = (
            f"the caller's deadline is {why.left / 1e9:.3f}s away but the expected wait "
            f"is {expected:.3f}s"
        )
    elif why.reason == "max_wait":
        reason = f"no slot came within max_wait ({max_wait or 0.0:.3f}s)"
    else:
        reason = "its place in the queue is gone"
    return BulkheadRejectedError(name, f"bulkhead {name!r} rejected the call: {reason}")


def _deadline_left() -> int | None:
    left = remaining()
    return None if left is None else secs_to_nanos(max(left, 0.0))


class BulkheadEngine:
    """A bulkhead: the core state machine plus its clock, classification and waiters."""

    _name: str
    _config: BulkheadConfig
    _core: BulkheadCore
    _clock: ManualClock | Monotonic
    _clock_obj: object
    _ignored: tuple[type[BaseException], ...]
    _held: contextvars.ContextVar[bool] | None
    _wakers: _Wakers

    def __new__(
        cls,
        name: str,
        config: BulkheadConfig,
        *,
        clock: object = None,
        ignored: tuple[type[BaseException], ...] | None = None,
        held: contextvars.ContextVar[bool] | None = None,
    ) -> Any:
        # Everything is set up here, as in the Rust class (which has no `__init__`): a subclass
        # may define `__new__` with its own signature and pass the engine's to `super()`.
        self = super().__new__(cls)
        self._name = name
        self._config = config
        self._core = BulkheadCore(config)
        self._clock = clock_of(clock)
        self._clock_obj = clock
        self._ignored = ignored or ()
        if held is not None and not isinstance(held, contextvars.ContextVar):
            raise TypeError(
                f"held must be a contextvars.ContextVar, got {type(held).__name__}"
            )
        self._held = held
        self._wakers = _Wakers()
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    # -- helpers ----------------------------------------------------------------------------

    def _now(self) -> int:
        return self._clock.now_ns()

    def _rejected(self, why: Rejection) -> BulkheadRejectedError:
        return _rejected(self._name, why, self._config.max_wait)

    def _ending(self, exc: BaseException | None) -> str:
        if exc is None:
            return SUCCESS
        if not isinstance(exc, Exception):
            return CANCELLED
        if self._ignored and isinstance(exc, self._ignored):
            return IGNORED
        return FAILURE

    def _settle(self, slot: Slot, exc: BaseException | None) -> None:
        work = getattr(exc, "_riprap_abandoned", None) if exc is not None else None
        if work is not None:
            # A riprap.timeout inside the call abandoned sync work that still runs: the slot
            # counts as timed out and comes back when the work really ends.
            self._core.record_timeout(slot)
            permit = BulkheadPermit(slot)
            # No exception with it: the slot is timed out, so how the work ends is no sample.
            if work.on_end(functools.partial(self.release, permit)):
                return  # released by the worker thread when the work ends
            taken = permit._take(self._core)  # the work ended meanwhile: release now
            if taken is None:
                return
            slot = taken
        try:
            ending = self._ending(exc)
            error = None
        except BaseException as e:  # a failing __instancecheck__: release, then surface
            ending, error = IGNORED, e
        if not self._core.try_release(slot):
            self._wakers.wake(self._core.release(slot, self._now(), ending))
        if error is not None:
            raise error

    def _reentrant(self) -> bool:
        if _holds(self._core.id):
            return True
        return self._held is not None and bool(self._held.get())

    def _enter(self) -> Slot:
        slot = self._core.try_acquire(self._now)
        return slot if slot is not None else self._enter_slow()

    def _enter_slow(self) -> Slot:
        reentrant = self._reentrant()
        deadline_left = _deadline_left()
        now = self._now()
        kind, value, woken = self._core.acquire(now, reentrant, deadline_left)
        self._wakers.wake(woken)
        if kind == "admit":
            return value  # type: ignore[no-any-return]
        if kind == "reject":
            raise self._rejected(value)
        deadline_at = None if deadline_left is None else now + deadline_left
        return self._wait(value, deadline_at)

    def _wait(self, ticket: int, deadline_at: int | None) -> Slot:
        event = threading.Event()
        self._wakers.watch(ticket, event.set)
        manual = isinstance(self._clock, ManualClock)
        error: BaseException
        try:
            while True:
                event.clear()
                now = self._now()
                kind, value, woken = self._core.claim(ticket, now)
                self._wakers.wake(woken)
                if kind == "granted":
                    return value  # type: ignore[no-any-return]
                if kind == "rejected":
                    error = self._rejected(value)
                    break
                if deadline_at is not None and now >= deadline_at:
                    self._give_up(ticket)
                    error = exceeded()
                    break
                untils = [u for u in (value, deadline_at) if u is not None]
                if manual and untils:
                    pause = 0.005  # a manual clock moves only when a test moves it
                elif untils:
                    pause = min(max(min(untils) - now, 1), 50_000_000) / 1e9
                else:
                    pause = 0.05
                event.wait(pause)
        except BaseException:
            self._give_up(ticket)  # interrupted: give the place (or a handed slot) back
            raise
        finally:
            self._wakers.unwatch(ticket)
        raise error

    def _give_up(self, ticket: int) -> None:
        self._wakers.wake(self._core.cancel(ticket, self._now()))

    def _finish(
        self, slot: Slot, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        bulkhead = self._core.id
        _hold(bulkhead, None)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            _unhold(bulkhead)
            self._settle(slot, exc)
            raise
        _unhold(bulkhead)
        self._settle(slot, None)
        return result

    # -- the binding's API --------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The bulkhead's name."""
        return self._name

    @property
    def clock(self) -> Any:
        """The clock given (None: the monotonic clock)."""
        return self._clock_obj

    @property
    def current_limit(self) -> int:
        """The admission limit now (it moves only in adaptive mode)."""
        return self._core.limit

    @property
    def timeout(self) -> float:
        """Seconds a call may run (`execute`, async calls) before it times out."""
        return self._config.timeout

    @property
    def max_wait(self) -> float | None:
        """Seconds a caller may wait in the queue (None: no limit)."""
        return self._config.max_wait

    def try_acquire(self) -> BulkheadPermit | None:
        """Takes a free slot when nobody waits; None otherwise (never waits, never rejects)."""
        slot = self._core.try_acquire(self._now)
        return None if slot is None else BulkheadPermit(slot)

    def acquire(self) -> BulkheadPermit:
        """A slot, waiting if needed; raises a fresh BulkheadRejectedError when refused."""
        return BulkheadPermit(self._enter())

    def release(self, permit: BulkheadPermit, exc: BaseException | None = None) -> None:
        """Hands a permit back (a second return is a no-op)."""
        slot = permit._take(self._core)
        if slot is not None:
            self._settle(slot, exc)

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs `func(*args, **kwargs)` in a slot."""
        return self._finish(self._enter(), func, *args, **kwargs)

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
        from ._bulkhead_call import BulkheadGuard  # noqa: PLC0415 - it imports this module

        inner = func(*args, **kwargs)
        if slow is None:
            close_quietly(inner)
            raise RuntimeError(
                "BulkheadAsyncCall needs its continuation "
                "(riprap._bulkhead_async.continuation)"
            )
        return Coroutine(func, inner, BulkheadGuard(self, slow))

    def _mark_task(self) -> contextvars.Token[bool] | None:
        """Marks the current task as holding a slot (see the binding); the token to undo it."""
        return None if self._held is None else self._held.set(True)

    def _unmark_task(self, token: contextvars.Token[bool] | None) -> None:
        if self._held is not None and token is not None:
            self._held.reset(token)

    def _acquire(self, reentrant: bool, deadline: float | None) -> BulkheadPermit | int:
        """A permit, a ticket to wait on, or a BulkheadRejectedError; never waits."""
        left = (
            None
            if deadline is None
            else secs_to_nanos(max(number("deadline", deadline), 0.0))
        )
        kind, value, woken = self._core.acquire(
            self._now(), reentrant or _holds(self._core.id), left
        )
        self._wakers.wake(woken)
        if kind == "admit":
            return BulkheadPermit(value)
        if kind == "queued":
            return value  # type: ignore[no-any-return]
        raise self._rejected(value)

    def _claim(self, ticket: int) -> BulkheadPermit | None:
        """The permit `ticket` was granted (None while it waits)."""
        kind, value, woken = self._core.claim(ticket, self._now())
        self._wakers.wake(woken)
        if kind == "granted":
            return BulkheadPermit(value)
        if kind == "waiting":
            return None
        raise self._rejected(value)

    def _cancel(self, ticket: int) -> None:
        """The waiter holding `ticket` gives up."""
        self._give_up(ticket)

    def _watch(self, ticket: int, callback: Callable[[], object]) -> None:
        """Calls `callback()` when `ticket` is granted or runs out of `max_wait`."""
        self._wakers.watch(ticket, callback)

    def _unwatch(self, ticket: int) -> None:
        """Forgets `ticket`'s callback."""
        self._wakers.unwatch(ticket)

    def _timed_out(self, permit: BulkheadPermit) -> None:
        """Records that the call holding `permit` timed out; the slot stays taken."""
        with permit._lock:
            permit._check(self._core)
            if permit._slot is not None:
                self._core.record_timeout(permit._slot)

    def _call_held(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Calls `func` with this thread marked as holding a slot; takes no slot."""
        bulkhead = self._core.id
        _hold(bulkhead, None)
        try:
            return func(*args, **kwargs)
        finally:
            _unhold(bulkhead)

    def _step(self, aw: Any, value: Any) -> tuple[bool, Any]:
        """One step of `aw` with this thread marked as holding a slot (see the binding)."""
        bulkhead = self._core.id
        _hold(bulkhead, None)
        try:
            return False, aw.send(value)
        except StopIteration as stop:
            return True, stop.value
        finally:
            _unhold(bulkhead)

    def _throw(self, aw: Any, exc: BaseException) -> tuple[bool, Any]:
        """Throws `exc` into `aw`, marked like `_step`."""
        bulkhead = self._core.id
        _hold(bulkhead, None)
        try:
            return False, aw.throw(exc)
        except StopIteration as stop:
            return True, stop.value
        finally:
            _unhold(bulkhead)

    def __enter__(self) -> Any:
        slot = self._enter()
        _hold(self._core.id, slot)
        return self

    def __exit__(
        self,
        _exc_type: object = None,
        exc: BaseException | None = None,
        _tb: object = None,
    ) -> None:
        slot = _take_slot(self._core.id)
        if slot is None:
            raise RuntimeError(
                f"bulkhead {self._name!r}: exit without a matching enter on this thread"
            )
        self._settle(slot, exc)

    def get_stats(self) -> dict[str, Any]:
        """A snapshot; see `Bulkhead.get_stats`."""
        s, woken = self._core.stats(self._now())
        self._wakers.wake(woken)
        c = self._config
        total, rejected = s["total"], s["rejected_total"]
        average = s["average"]
        return {
            "name": self._name,
            "active_calls": s["active"],
            "queued_calls": s["queued"],
            "rejected_calls": rejected,
            "total_calls": total,
            "rejection_rate": rejected / total if total else 0.0,
            "utilization": s["active"] / c.max_concurrent_calls,
            "config": {
                "max_concurrent": c.max_concurrent_calls,
                "max_queue_size": c.max_queue_size,
                "timeout": c.timeout,
                "isolation_level": c.isolation_level,
                "max_wait": c.max_wait,
                "slow_call_duration": c.slow_call_duration,
            },
            "current_limit": s["limit"],
            "admitted_calls": s["admitted"],
            "waited_calls": s["waited"],
            "cancelled_waits": s["cancelled_waits"],
            "timed_out_calls": s["timed_out"],
            "running_after_timeout": s["running_after_timeout"],
            "average_duration": None if average is None else average / 1e9,
            "rejected_queue_full": s["rejected"]["queue_full"],
            "rejected_max_wait": s["rejected"]["max_wait"],
            "rejected_deadline": s["rejected"]["deadline"],
            "rejected_reentrant": s["rejected"]["reentrant"],
        }
