"""What every Redis-backed primitive shares.

Its options, its clock arguments, its counters, and what it does when the storage fails.

`on_storage_error` decides a call Redis could not decide:

* "local" (default): the primitive's in-process state decides, as if there were no Redis. A
  limiter's local state runs at `local_fraction` of the shared rate, so N processes in an
  outage admit N x `local_fraction` x rate together (liwala/ay-framework#205: a per-process
  fallback at the full rate multiplies the limit by N; set `local_fraction=1/N`).
* "fail_open": admit.
* "fail_closed": refuse, with the storage error as the `__cause__` of the rejection.

Every storage error is counted (`storage_errors`), and so is every decision made without Redis
(`fallback_decisions`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .. import _validate as v
from .._fork import track
from .storage import RedisStorage, StorageError, storage_of

__all__ = ["Counters", "Options", "options"]

TIME_SOURCES = ("server", "client")


class Options:
    """Validated `storage=` options of one primitive."""

    __slots__ = ("clock", "local_fraction", "mode", "name", "storage", "time_source")

    def __init__(
        self,
        name: str,
        storage: RedisStorage,
        *,
        mode: str,
        local_fraction: float,
        time_source: str,
        clock: Any,
    ) -> None:
        self.name = name
        self.storage = storage
        self.mode = mode
        self.local_fraction = local_fraction
        self.time_source = time_source
        self.clock = clock

    def now_ns(self) -> str:
        """The time argument of a GCRA script: '' (the server's TIME) or the caller's clock."""
        if self.time_source == "server":
            return ""
        clock = self.clock
        return str(clock.now_ns() if clock is not None else time.time_ns())

    def now_us(self) -> str:
        """The time argument of a breaker script: '' (the server's TIME) or microseconds."""
        if self.time_source == "server":
            return ""
        clock = self.clock
        return str((clock.now_ns() if clock is not None else time.time_ns()) // 1000)

    def key(self, suffix: str) -> str:
        """A key of this primitive: `<prefix>:{<name>}:<suffix>` (the name is the hash tag)."""
        return f"{self.storage.prefix}:{{{self.name}}}:{suffix}"


def local_fraction(value: object) -> float:
    """`local_fraction=`: a number in (0, 1]."""
    f = v.check_float("local_fraction", v.number("local_fraction", value), 0.0, False)
    if f > 1.0:
        raise ValueError(f"local_fraction must be <= 1.0, got {v.py_float(f)}")
    return f


def time_source(value: object) -> str:
    """`time_source=`: "server" (default) or "client"."""
    if not isinstance(value, str):
        raise TypeError(f"time_source must be a str, got {type(value).__name__}")
    if value not in TIME_SOURCES:
        raise ValueError(
            f"time_source must be one of 'server', 'client', got {value!r}"
        )
    return value


def check_unshared(local_fraction_: object, time_source_: object) -> None:
    """The storage keywords of a primitive without `storage=`: validated, nothing more."""
    local_fraction(local_fraction_)
    time_source(time_source_)


def options(
    name: object,
    storage: object,
    *,
    on_storage_error: object,
    local_fraction_: object,
    time_source_: object,
    clock: Any,
) -> Options:
    """Every `storage=` keyword, validated (a name is required: it names the shared state)."""
    shared = storage_of(storage)
    checked = v.name(name)
    if not checked:
        raise ValueError(
            "name is required with storage=: it names the shared state in Redis "
            "(every process using the same name shares it)"
        )
    mode = v.storage_error_mode(on_storage_error)
    fraction = local_fraction(local_fraction_)
    source = time_source(time_source_)
    return Options(
        checked,
        shared,
        mode=mode,
        local_fraction=fraction,
        time_source=source,
        clock=clock,
    )


class Counters:
    """Counts of decisions made here (Redis's and the fail-open/closed ones), and errors."""

    __slots__ = (
        "__weakref__",
        "_lock",
        "admitted",
        "fallback_decisions",
        "rejected",
        "state_lost",
        "storage_errors",
        "waited",
    )

    def __init__(self) -> None:
        self._after_fork()
        track(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self.admitted = self.rejected = self.waited = 0
        self.storage_errors = self.fallback_decisions = self.state_lost = 0

    def add(self, field: str, n: int = 1) -> None:
        """Adds `n` to one counter."""
        with self._lock:
            setattr(self, field, getattr(self, field) + n)

    def admit(self) -> None:
        """One more admitted (the common case, kept short)."""
        with self._lock:
            self.admitted += 1

    def reject(self) -> None:
        """One more rejected."""
        with self._lock:
            self.rejected += 1

    def failed(self, error: StorageError, decided_here: bool) -> None:
        """Count a call the storage could not decide.

        The error counts unless the call skipped Redis (it was down); a fallback decision
        counts unless the local state decides.
        """
        with self._lock:
            if not error.skipped:
                self.storage_errors += 1
            if decided_here:
                self.fallback_decisions += 1


def wait_ns(reply: Any) -> int:
    """The wait of a GCRA reply, in nanoseconds (`{code, s, n, ...}`)."""
    return int(reply[1]) * 1_000_000_000 + int(reply[2])


def ms_ceil(ns: int) -> int:
    """Nanoseconds as whole milliseconds, rounded up."""
    return -(-ns // 1_000_000)


def us_ceil(ns: int) -> int:
    """Nanoseconds as whole microseconds, rounded up (at least 1)."""
    return max(1, -(-ns // 1000))
