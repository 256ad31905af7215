"""Reference twin of `rust/core/src/limiter.rs` and `rust/py/src/limiter.rs`.

GCRA in integer nanoseconds, exactly as the core does it: the emission interval `T` is `1e9/rate`
rounded up, the tolerance `τ` is `burst x T` rounded down (both computed exactly with `Fraction`),
and a request for `n` tokens at `now` is admitted iff `max(tat, now) + n·T - τ <= now`. Waiters
reserve their slot up front and give it back when cancelled; see `Waiters` for when that is exact.
Decisions, waits, counters and error messages are identical to the Rust backend's.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .. import _deadlines as deadlines
from .._errors import RateLimitExceeded
from .._fork import track
from .._validate import (
    U64_MAX,
    check_float,
    cost,
    max_wait,
    no_storage,
    number,
    py_float,
    secs_to_nanos,
)
from .._validate import name as _name
from .._validate import on_limit as _on_limit
from ._awaitable import Coroutine, Drive, Handover, close_quietly
from ._clock import ManualClock, Monotonic, clock_of, sleep_real
from ._wrapper import AsyncNativeWrapper, NativeWrapper

__all__ = [
    "LimitedAsyncCall",
    "LimitedCall",
    "Quota",
    "RateLimiter",
    "Waiters",
    "Wakers",
    "quota_arg",
    "rate_limited",
    "wait_until_due",
]

NANOS = 10**9


# --- quota -------------------------------------------------------------------------------------


def _too_slow(rate: float) -> ValueError:
    return ValueError(
        f"rate {py_float(rate)} is too small: the interval between tokens, 1/rate, must be "
        "at most 2**64 - 1 ns (about 584 years)"
    )


def _interval_ns(rate: float) -> int:
    t = math.ceil(Fraction(NANOS) / Fraction(rate))
    if t > U64_MAX:
        raise _too_slow(rate)
    # The real rate 1e9/t is within 0.1 % of `rate` iff 1e12 >= 999 x t x rate.
    if 999 * t * Fraction(rate) > 1000 * NANOS:
        raise ValueError(
            f"rate {py_float(rate)} is not representable: tokens are spaced a whole number of "
            f"nanoseconds apart and 1/rate rounds up to {t} ns, more than 0.1 % slower than "
            "requested (every rate up to 1e6/s works; above that, 1e9/rate must be within "
            "0.1 % of a whole number)"
        )
    return t


def _tolerance_ns(rate: float, burst: float, interval: int) -> int:
    exact = Fraction(burst) * interval
    tau = math.floor(exact)
    if 999 * exact > 1000 * tau:
        raise ValueError(
            f"burst {py_float(burst)} is not representable at rate {py_float(rate)}: "
            f"burst / rate rounds down to {tau} ns, more than 0.1 % below the requested "
            "tolerance (use a whole-number burst)"
        )
    if tau > U64_MAX:
        raise ValueError(
            f"burst {py_float(burst)} at rate {py_float(rate)} is not representable: "
            "burst / rate must be at most 2**64 - 1 ns (about 584 years)"
        )
    return tau


class Quota:
    """A validated rate and burst, with their exact integer representation."""

    __slots__ = ("burst", "interval", "max_n", "rate", "tolerance")

    def __init__(self, rate: float, burst: float | None) -> None:
        check_float("rate", rate, 0.0, False)
        if burst is None:
            burst = max(rate, 1.0)
        else:
            check_float("burst", burst, 1.0, True)
        self.rate, self.burst = rate, burst
        self.interval = _interval_ns(rate)
        self.tolerance = _tolerance_ns(rate, burst, self.interval)
        self.max_n = math.floor(burst)

    def cost(self, n: int) -> int:
        """Nanoseconds of `n` tokens; ValueError when `n` is 0 or more than `burst`."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if n > self.max_n:
            raise ValueError(f"n must be <= burst ({py_float(self.burst)}), got {n}")
        return n * self.interval

    def schedule(self, tat: int, now: int, cost: int) -> tuple[int, int] | None:
        """(new TAT, wait) of a request costing `cost` at `now`; None past the end of time."""
        end = max(tat, now) + cost
        if end > U64_MAX:
            return None
        return end, max(0, end - self.tolerance - now)


# --- argument checks (the rest are in riprap._validate, shared with the binding) ---


def quota_arg(rate: object, burst: object) -> Quota:
    """`rate=` and `burst=` as a validated quota."""
    return Quota(
        number("rate", rate), None if burst is None else number("burst", burst)
    )


def rate_limited(name: str | None, wait: int) -> Exception:
    """A fresh RateLimitExceeded."""
    return RateLimitExceeded(name, wait / 1e9)


def now_ns(clock: ManualClock | Monotonic) -> int:
    """The clock's time in nanoseconds."""
    return clock.now_ns()


def wait_until_due(
    clock: ManualClock | Monotonic, remaining: Callable[[int], int]
) -> None:
    """Block until `remaining(now)` is 0.

    A manual clock advances; real time sleeps in <= 50 ms slices (Ctrl-C interrupts
    `time.sleep`). A wait that would end after an enclosing `riprap.deadline` /
    `riprap.timeout` is not started: `TimeoutExceededError` (the caller gives the reservation
    back). Each slice is a counted `sleep_real`.
    """
    left = deadlines.remaining()
    if left is not None and remaining(clock.now_ns()) > secs_to_nanos(left):
        raise deadlines.exceeded()
    while True:
        left = remaining(clock.now_ns())
        if left == 0:
            return
        if isinstance(clock, ManualClock):
            with clock._lock:
                clock._ns = min(U64_MAX, clock._ns + left)
        else:
            sleep_real(min(left, 50_000_000) / 1e9)


class Wakers:
    """Callbacks that wake async waiters whose slot moved earlier."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[tuple[int, Callable[[], object]]] = []

    def watch(self, ticket: int, callback: Callable[[], object]) -> None:
        """Call `callback()` when `ticket`'s slot moves."""
        with self._lock:
            self._callbacks.append((ticket, callback))

    def unwatch(self, ticket: int) -> None:
        """Forget `ticket`'s callback."""
        with self._lock:
            self._callbacks = [(t, c) for t, c in self._callbacks if t != ticket]

    def wake_after(self, ticket: int) -> None:
        """Call the callback of every waiter behind `ticket` (errors are ignored)."""
        with self._lock:
            callbacks = [c for t, c in self._callbacks if t > ticket]
        for callback in callbacks:
            try:
                callback()
            except Exception:
                continue


# --- the ledger of waiters ---------------------------------------------------------------------


@dataclass
class _Pending:
    ticket: int
    arrival: int
    before: int
    end: int
    cost: int
    done: bool = False


@dataclass
class GiveBack:
    """What giving back a reservation changes."""

    index: int
    moved: list[tuple[int, int]]
    new_tat: int


class Waiters:
    """The reservations of one bucket that have not proceeded yet, in slot order.

    Giving one back replays the later reservations as if it had never been made. That is sound
    (it cannot let any window exceed the bound) only while every later reservation is still
    pending, each follows the previous one directly, and the TAT is still the last one's end;
    otherwise the tokens count as spent.
    """

    def __init__(self) -> None:
        self.entries: list[_Pending] = []

    def __len__(self) -> int:
        return len(self.entries)

    def push(self, ticket: int, arrival: int, before: int, end: int, cost: int) -> None:
        """Queue a reservation (tickets only grow)."""
        self.entries.append(_Pending(ticket, arrival, before, end, cost))

    def _index(self, ticket: int) -> int | None:
        for i, p in enumerate(self.entries):
            if p.ticket == ticket:
                return None if p.done else i
        return None

    def end_of(self, ticket: int) -> int | None:
        """The TAT a pending reservation left."""
        i = self._index(ticket)
        return None if i is None else self.entries[i].end

    def _trim(self) -> None:
        while self.entries and self.entries[0].done:
            self.entries.pop(0)

    def complete(self, ticket: int) -> bool:
        """Mark `ticket` as proceeded."""
        i = self._index(ticket)
        if i is None:
            return False
        self.entries[i].done = True
        self._trim()
        return True

    def plan(self, ticket: int, tat: int) -> GiveBack | None:
        """How to give `ticket` back while the TAT is `tat`, if that is sound."""
        index = self._index(ticket)
        if index is None:
            return None
        chain_end = self.entries[index].end
        for p in self.entries[index + 1 :]:
            if p.done or p.before != chain_end:
                return None
            chain_end = p.end
        if tat != chain_end:
            return None
        prev = self.entries[index].before
        moved = []
        for p in self.entries[index + 1 :]:
            end = max(prev, p.arrival) + p.cost
            moved.append((prev, end))
            prev = end
        return GiveBack(index, moved, prev)

    def apply(self, plan: GiveBack) -> bool:
        """Apply a plan; True if a later slot moved."""
        shifted = False
        del self.entries[plan.index]
        for p, (before, end) in zip(
            self.entries[plan.index :], plan.moved, strict=True
        ):
            shifted |= p.end != end
            p.before, p.end = before, end
        self._trim()
        return shifted

    def spend(self, ticket: int) -> None:
        """Give up on `ticket` without giving its tokens back."""
        i = self._index(ticket)
        if i is not None:
            self.entries[i].done = True
            self._trim()


class Counters:
    """admitted, rejected, waited."""

    __slots__ = ("admitted", "rejected", "waited")

    def __init__(self) -> None:
        self.admitted = self.rejected = self.waited = 0


# --- the limiter -------------------------------------------------------------------------------


class RateLimiter:
    """A GCRA token bucket: `rate` tokens per second, `burst` at most, starting full."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        name: str | None = None,
        on_limit: str = "wait",
        clock: object = None,
        storage: object = None,
        on_storage_error: str | None = None,
    ) -> None:
        self._quota = quota_arg(rate, burst)
        self._name = _name(name)
        self._raise = _on_limit(on_limit)
        self._clock = clock_of(clock)
        self._clock_obj = clock
        no_storage("RateLimiter", storage, on_storage_error)
        self._origin = self._clock.now_ns()
        self._next_ticket = 0
        self._after_fork()
        track(self)

    def _after_fork(self) -> None:
        """Full, with no waiters and no counts (also in a forked child; tickets go on).

        So a reservation made before the fork is never mistaken for one made after it.
        """
        self._tat = 0
        self._lock = threading.Lock()
        self._waiters = Waiters()
        self._counters = Counters()
        self._wakers = Wakers()

    def _now(self) -> int:
        return max(0, self._clock.now_ns() - self._origin)

    def _reserve_cost(self, cost: int, max_wait: int | None) -> tuple[str, int]:
        """("admitted", 0), ("queued", ticket) or ("refused", wait)."""
        now = self._now()
        with self._lock:
            step = self._quota.schedule(self._tat, now, cost)
            if step is None:
                self._counters.rejected += 1
                return "refused", U64_MAX
            end, wait = step
            if wait == 0:
                self._tat = end
                self._counters.admitted += 1
                return "admitted", 0
            if max_wait is not None and wait > max_wait:
                self._counters.rejected += 1
                return "refused", wait
            self._next_ticket += 1
            self._waiters.push(self._next_ticket, now, self._tat, end, cost)
            self._tat = end
            return "queued", self._next_ticket

    def _wait_ticket(self, ticket: int) -> None:
        try:
            wait_until_due(self._clock, lambda now: self._remaining_ns(ticket, now))
        except BaseException:
            self._cancel(ticket)
            raise
        self._complete(ticket)

    def _remaining_ns(self, ticket: int, clock_now: int) -> int:
        now = max(0, clock_now - self._origin)
        with self._lock:
            end = self._waiters.end_of(ticket)
        return 0 if end is None else max(0, end - self._quota.tolerance - now)

    def _enter(self) -> None:
        what, value = self._reserve_cost(
            self._quota.interval, 0 if self._raise else None
        )
        if what == "refused":
            raise rate_limited(self._name, value)
        if what == "queued":
            self._wait_ticket(value)

    def _run(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        self._enter()
        return func(*args, **kwargs)

    def _admit_now(self) -> bool:
        """One token if it is there now, counted only when taken (the async fast path)."""
        now = self._now()
        with self._lock:
            step = self._quota.schedule(self._tat, now, self._quota.interval)
            if step is None or step[1] != 0:
                return False
            self._tat = step[0]
            self._counters.admitted += 1
            return True

    def _arun(
        self,
        func: Callable[..., Any],
        slow: Callable[..., Any] | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        return Coroutine(func, func(*args, **kwargs), LimiterGuard(self, slow))

    def try_acquire(self, n: int = 1) -> bool:
        """Takes `n` tokens if they are available now; never waits."""
        c = cost(self._quota, n)
        now = self._now()
        with self._lock:
            step = self._quota.schedule(self._tat, now, c)
            if step is not None and step[1] == 0:
                self._tat = step[0]
                self._counters.admitted += 1
                return True
            self._counters.rejected += 1
            return False

    def acquire(self, n: int = 1, timeout: float | None = None) -> None:
        """Takes `n` tokens, blocking until they are available.

        Raises RateLimitExceeded at once if the wait would exceed `timeout` seconds.
        """
        ticket = self._reserve(n, timeout)
        if ticket:
            self._wait_ticket(ticket)

    def _reserve(self, n: int | None, timeout: float | None) -> int:
        """Reserve `n` tokens: 0 when admitted at once, else a ticket to wait on."""
        what, value = self._reserve_cost(
            cost(self._quota, n), max_wait("timeout", timeout)
        )
        if what == "refused":
            raise rate_limited(self._name, value)
        return value if what == "queued" else 0

    def _remaining(self, ticket: int) -> float:
        """Seconds until `ticket`'s slot (0.0: due)."""
        return self._remaining_ns(ticket, self._clock.now_ns()) / 1e9

    def _complete(self, ticket: int) -> None:
        """The waiter holding `ticket` proceeds."""
        with self._lock:
            if self._waiters.complete(ticket):
                self._counters.admitted += 1
                self._counters.waited += 1

    def _cancel(self, ticket: int) -> None:
        """The waiter holding `ticket` gave up: give its slot back, wake those behind it."""
        with self._lock:
            plan = self._waiters.plan(ticket, self._tat)
            if plan is None:
                self._waiters.spend(ticket)
                shifted = False
            else:
                shifted = self._waiters.apply(plan)
                self._tat = plan.new_tat
        if shifted:
            self._wakers.wake_after(ticket)

    def _watch(self, ticket: int, callback: Callable[[], object]) -> None:
        """Call `callback()` whenever `ticket`'s slot moves earlier."""
        self._wakers.watch(ticket, callback)

    def _unwatch(self, ticket: int) -> None:
        """Forget `ticket`'s callback."""
        self._wakers.unwatch(ticket)

    def __enter__(self) -> RateLimiter:
        self._enter()
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def get_stats(self) -> dict[str, Any]:
        """Counters: name, rate, burst, admitted, rejected, waited."""
        c = self._counters
        return {
            "name": self._name,
            "rate": self._quota.rate,
            "burst": self._quota.burst,
            "admitted": c.admitted,
            "rejected": c.rejected,
            "waited": c.waited,
        }

    @property
    def name(self) -> str | None:
        """The limiter's name (in errors and stats)."""
        return self._name

    @property
    def rate(self) -> float:
        """Tokens per second."""
        return self._quota.rate

    @property
    def burst(self) -> float:
        """The bucket size."""
        return self._quota.burst

    @property
    def on_limit(self) -> str:
        """What a decorated call or `with` block does without a token: "wait" or "raise"."""
        return "raise" if self._raise else "wait"

    @property
    def clock(self) -> Any:
        """The clock given at construction (None: the monotonic clock)."""
        return self._clock_obj

    def __repr__(self) -> str:
        q = self._quota
        return (
            f"RateLimiter(rate={float(q.rate)!r}, burst={float(q.burst)!r}, "
            f"name={self._name!r})"
        )


class LimitedCall(NativeWrapper[RateLimiter]):
    """A rate-limited sync function (see `RateLimiter.__call__`)."""

    __slots__ = ()
    _kind = "LimitedCall"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # `_run` inlined: a rejection's traceback stays as short as the native wrapper's.
        self._engine._enter()
        return self._func(*args, **kwargs)

    @property
    def limiter(self) -> RateLimiter:
        """The engine this function runs under."""
        return self._engine


class LimitedAsyncCall(AsyncNativeWrapper[RateLimiter]):
    """A rate-limited coroutine function (see `RateLimiter.__call__`)."""

    __slots__ = ()
    _kind = "LimitedAsyncCall"

    @property
    def limiter(self) -> RateLimiter:
        """The engine this function runs under."""
        return self._engine


class LimiterGuard:
    """A limiter's part in one awaited call (twin of the binding's `LimiterGuard`)."""

    __slots__ = ("_engine", "_slow")

    def __init__(self, engine: RateLimiter, slow: Callable[..., Any] | None) -> None:
        self._engine = engine
        self._slow = slow

    def start(self, inner: Any) -> Any:
        """A token now: drive `inner`; else hand over to the continuation that waits."""
        if self._engine._admit_now():
            return Drive(inner)
        if self._slow is None:
            close_quietly(inner)
            raise RuntimeError(
                "LimitedAsyncCall needs its continuation (riprap._limiter)"
            )
        return Handover(self._slow(inner))

    def returned(self, value: Any) -> Any:
        """The call's result, untouched."""
        return value

    def raised(self, exc: BaseException) -> Any:
        """The call's exception, untouched."""
        raise exc

    def abandon(self) -> None:
        """Nothing is held once the token is taken."""
