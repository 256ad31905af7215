"""Reference twin of `rust/core/src/clock.rs` and `rust/py/src/clock.rs`."""

from __future__ import annotations

import threading
import time

from .._fork import track
from .._validate import U64_MAX, check_float, number, secs_to_nanos

__all__ = [
    "ManualClock",
    "Monotonic",
    "clock_of",
    "monotonic",
    "real_sleeps",
    "sleep_real",
]

_ORIGIN = time.monotonic_ns()
_REAL_SLEEPS = [0]


def monotonic() -> float:
    """Seconds on the reference's monotonic clock (origin: import time)."""
    return (time.monotonic_ns() - _ORIGIN) / 1e9


def sleep_real(seconds: float) -> None:
    """The one place the reference sleeps for real: `time.sleep(seconds)`, counted."""
    _REAL_SLEEPS[0] += 1  # a lost count under a race is harmless: tests compare with 0
    time.sleep(seconds)


def real_sleeps() -> int:
    """How many real sleeps the reference has made in this process (see `sleep_real`)."""
    return _REAL_SLEEPS[0]


def _nanos(field: str, value: object) -> int:
    return secs_to_nanos(check_float(field, number(field, value), 0.0, True))


class ManualClock:
    """A manually driven clock shared by every primitive given it (`clock=`)."""

    def __init__(self, start: object = None) -> None:
        self._ns = 0 if start is None else _nanos("start", start)
        self._after_fork()
        track(self)

    def _after_fork(self) -> None:
        """A new lock (a forked child keeps the time)."""
        self._lock = threading.Lock()

    def now(self) -> float:
        """The current time in seconds."""
        return self._ns / 1e9

    def now_ns(self) -> int:
        """The current time in whole nanoseconds."""
        return self._ns

    def advance(self, seconds: object) -> None:
        """Moves time forward by `seconds` (saturating at the end of time)."""
        step = _nanos("seconds", seconds)
        with self._lock:
            self._ns = min(U64_MAX, self._ns + step)

    def sleep(self, seconds: object) -> None:
        """Like `advance`: a sleep on a manual clock passes no real time."""
        self.advance(seconds)

    def set(self, seconds: object) -> None:
        """Sets the time, forwards or backwards."""
        ns = _nanos("seconds", seconds)
        with self._lock:
            self._ns = ns

    def __repr__(self) -> str:
        return f"ManualClock(now={self._ns / 1e9})"


class Monotonic:
    """The reference's stand-in for `Clock::Monotonic`: integer nanoseconds."""

    __slots__ = ()

    @staticmethod
    def now_ns() -> int:
        """Nanoseconds since import."""
        return time.monotonic_ns() - _ORIGIN


def clock_of(value: object) -> ManualClock | Monotonic:
    """`clock=` as the core sees it: `None` (monotonic) or a ManualClock."""
    if value is None:
        return Monotonic()
    if isinstance(value, ManualClock):
        return value
    raise TypeError(
        f"clock must be a riprap.testing.ManualClock or None, got {type(value).__name__}"
    )
