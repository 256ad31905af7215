"""What the monitor and the Prometheus collector can see: every named primitive, weakly.

Two tables, both process-wide:

* **Primitives by kind.** A primitive calls `track(kind, self)` once, when it is constructed
  (breakers and named rate limiters do; bulkheads, fallback strategies, result caches and
  dead-letter queues register under their own kinds). The entry holds a weak reference: a
  primitive that is dropped disappears from the monitor and the metrics, and tracking never
  keeps anything alive. `live(kind)` lists the live ones, oldest first, each with its *label*.
* **Retry counters by operation.** Retry engines are made per decorated function (and per code
  block), so their counts are kept per operation name instead: `retry_counters(operation)`
  returns the one `RetryCounters` every engine of that operation shares. Operation names come
  from code (`module.qualname`), so the table is bounded; past `MAX_OPERATIONS` names, new ones
  share the counters of `OVERFLOW`.

Labels. Two live primitives of one kind may share a name (two `CircuitBreaker("db")`); metrics
must never show two series with the same labels (Prometheus rejects such a scrape). The first
primitive of a name is labelled with the name itself, the next ones `name#2`, `name#3`, ...: the
lowest suffix free when it is tracked, kept for its whole life (so a series never changes owner
while both live). A name that is itself taken as a label (a breaker really called `db#2`) gets
the next free suffix. Nothing here is per call: tracking costs one lock at construction.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from . import _fork
from ._backend import core

__all__ = [
    "BREAKER",
    "BULKHEAD",
    "DEAD_LETTER_QUEUE",
    "FALLBACK",
    "KINDS",
    "MAX_OPERATIONS",
    "OVERFLOW",
    "RATE_LIMITER",
    "RESULT_CACHE",
    "live",
    "note_transition",
    "recent_transitions",
    "transitions_of",
    "retry_counters",
    "retry_operations",
    "retry_timing",
    "set_retry_timing",
    "track",
]

BREAKER = "circuit_breaker"
RATE_LIMITER = "rate_limiter"
BULKHEAD = "bulkhead"
FALLBACK = "fallback"
RESULT_CACHE = "result_cache"
DEAD_LETTER_QUEUE = "dead_letter_queue"
#: The kinds the monitor and the collector read, each with its documented stats shape.
KINDS = (BREAKER, RATE_LIMITER, BULKHEAD, FALLBACK, RESULT_CACHE, DEAD_LETTER_QUEUE)

#: Retry operations counted apart; later names share `OVERFLOW`'s counters.
MAX_OPERATIONS = 1000
#: The label of everything past a cap (retry operations here, series in the collector).
OVERFLOW = "__overflow__"
#: Breaker transitions remembered for the dashboard (the newest).
RECENT_TRANSITIONS = 50


class _Entry:
    __slots__ = ("label", "ref")

    def __init__(self, label: str, ref: weakref.ref[Any]) -> None:
        self.label = label
        self.ref = ref


class _Registry:
    def __init__(self) -> None:
        self._serials = itertools.count()
        self._entries: dict[str, dict[int, _Entry]] = {}
        self._labels: dict[str, set[str]] = {}
        # Weak-reference callbacks only append here (they may run inside any allocation, even
        # while this thread holds the lock); the entries are removed under the lock later.
        self._dead: list[tuple[str, int]] = []
        self._operations: dict[str, Any] = {}
        self._timing = False
        self._transitions: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=RECENT_TRANSITIONS
        )
        self._after_fork()
        _fork.track(self)

    def _after_fork(self) -> None:
        # A forked child keeps the entries (the objects live on in it); only the lock is new.
        self._lock = threading.Lock()

    def _purge(self) -> None:
        while self._dead:
            kind, serial = self._dead.pop()
            entry = self._entries.get(kind, {}).pop(serial, None)
            if entry is not None:
                self._labels[kind].discard(entry.label)

    def _forget(self, kind: str, serial: int) -> Callable[[object], None]:
        dead = self._dead

        def gone(_ref: object) -> None:
            dead.append((kind, serial))

        return gone

    def track(self, kind: str, obj: object, name: str) -> str:
        serial = next(self._serials)
        ref = weakref.ref(obj, self._forget(kind, serial))
        with self._lock:
            self._purge()
            used = self._labels.setdefault(kind, set())
            label, n = name, 1
            while label in used:
                n += 1
                label = f"{name}#{n}"
            used.add(label)
            self._entries.setdefault(kind, {})[serial] = _Entry(label, ref)
        return label

    def live(self, kind: str) -> list[tuple[str, Any]]:
        with self._lock:
            self._purge()
            entries = list(self._entries.get(kind, {}).values())
        out = []
        for entry in entries:
            obj = entry.ref()
            if obj is not None:
                out.append((entry.label, obj))
        return out

    def note_transition(
        self, label: str, old: str, new: str, counts: dict[tuple[str, str], int]
    ) -> None:
        event = {"time": time.time(), "name": label, "from": old, "to": new}
        with self._lock:
            counts[old, new] = counts.get((old, new), 0) + 1
            self._transitions.append(event)

    def transitions_of(
        self, counts: dict[tuple[str, str], int]
    ) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(counts)

    def recent_transitions(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._transitions)

    def retry_counters(self, operation: str) -> Any:
        with self._lock:
            counters = self._operations.get(operation)
            if counters is None:
                if len(self._operations) >= MAX_OPERATIONS:
                    operation = OVERFLOW
                    counters = self._operations.get(operation)
                if counters is None:
                    counters = core.RetryCounters()
                    counters.set_timing(self._timing)
                    self._operations[operation] = counters
            return counters

    def retry_operations(self) -> list[tuple[str, Any]]:
        with self._lock:
            return list(self._operations.items())

    def set_retry_timing(self, on: bool) -> None:
        with self._lock:
            self._timing = on
            for counters in self._operations.values():
                counters.set_timing(on)


_REGISTRY = _Registry()


def track(kind: str, obj: object, name: str | None = None) -> str:
    """Make `obj` visible to the monitor and the metrics under `kind`, for as long as it lives.

    Call it once, from the primitive's constructor. `name` defaults to `obj.name`; an object
    with no name is tracked under the kind's own name. `obj.get_stats()` must return the stats
    shape documented for `kind` (see `riprap._monitor`). Returns the label the object is shown
    under (its name, or `name#N` when another live object of the kind already has it).
    """
    if name is None:
        name = getattr(obj, "name", None) or kind
    return _REGISTRY.track(kind, obj, name)


def live(kind: str) -> list[tuple[str, Any]]:
    """The live objects tracked under `kind`, oldest first, as `(label, object)` pairs."""
    return _REGISTRY.live(kind)


def note_transition(
    label: str, old: str, new: str, counts: dict[tuple[str, str], int]
) -> None:
    """Count a breaker's transition and remember it for the dashboard.

    The breaker labelled `label` went from `old` to `new`: the transition is counted in
    `counts` (the breaker's own, under this module's lock) and kept, with the wall time.
    """
    _REGISTRY.note_transition(label, old, new, counts)


def transitions_of(counts: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """A copy of a breaker's transition counts, taken under the lock they are counted under."""
    return _REGISTRY.transitions_of(counts)


def recent_transitions() -> list[dict[str, Any]]:
    """The newest breaker transitions, oldest first: `time` (wall clock), `name`, `from`, `to`."""
    return _REGISTRY.recent_transitions()


def retry_counters(operation: str) -> Any:
    """The `RetryCounters` shared by every retry engine of `operation` (created on first use)."""
    return _REGISTRY.retry_counters(operation)


def retry_operations() -> list[tuple[str, Any]]:
    """Every counted retry operation and its counters, in the order they were first seen."""
    return _REGISTRY.retry_operations()


def set_retry_timing(on: bool) -> None:
    """Turn the retry duration histogram on or off, for every operation, present and future.

    Off (the default), a retried call reads no clock unless its policy has a deadline; on, it
    reads the clock when it starts and when it ends. `riprap.metrics.register()` turns it on.
    """
    _REGISTRY.set_retry_timing(bool(on))


def retry_timing() -> bool:
    """Whether the retry duration histogram is on."""
    return _REGISTRY._timing
