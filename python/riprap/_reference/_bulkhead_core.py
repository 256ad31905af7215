"""Reference twin of `rust/core/src/bulkhead.rs` (and its `bulkhead/` submodules).

`BulkheadCore` is the state machine, with times in integer nanoseconds exactly like the core; one
lock guards everything (the core gets the same decisions from one atomic word plus a short
mutex). The rules, in short (the core's module docs give the why):

* Admit while a slot is free and nobody waits; a newcomer never overtakes a waiter.
* Otherwise reject (the caller holds a slot already; the queue is full; its deadline comes before
  its expected turn) or queue it with a ticket. Waiters are served first come, first served.
* A freed slot is handed to the first live waiter (the active count stays); a waiter that gives
  up after its grant passes the slot on. `max_wait` expires waiters from the front.
* The calls admitted into a full bulkhead or from the queue (and every call when adaptive) are
  timed; their mean (weight 1/8) estimates the expected wait: mean x position / limit.
* Adaptive: a failure, a timeout or a slow success halves the limit once per epoch; a fast
  success made with at least half of the limit in flight earns a credit, `limit` credits raise
  it by one.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._fork import track
from .._validate import U64_MAX, secs_to_nanos

if TYPE_CHECKING:
    from ._bulkhead import BulkheadConfig

__all__ = [
    "CANCELLED",
    "FAILURE",
    "IGNORED",
    "MAX_COUNT",
    "SUCCESS",
    "BulkheadCore",
    "Rejection",
    "Slot",
]

MAX_COUNT = 1_000_000_000
SUCCESS, FAILURE, IGNORED, CANCELLED = "success", "failure", "ignored", "cancelled"
_IDS = itertools.count()


@dataclass(frozen=True)
class Rejection:
    """Why a call was refused: "queue_full", "reentrant", "deadline", "max_wait" or "gone"."""

    reason: str
    left: int = 0
    expected_wait: int | None = None


class Slot:
    """One slot: its bulkhead, generation, start (if timed), in-flight count, epoch, timeout."""

    __slots__ = ("epoch", "generation", "in_flight", "owner", "start", "timed_out")

    def __init__(
        self, owner: int, generation: int, start: int | None, in_flight: int, epoch: int
    ) -> None:
        self.owner, self.generation, self.start = owner, generation, start
        self.in_flight, self.epoch, self.timed_out = in_flight, epoch, False


class BulkheadCore:
    """The state machine; every method takes the time as integer nanoseconds."""

    def __init__(self, config: BulkheadConfig) -> None:
        self._id = next(_IDS)
        self.config = config
        n = config.max_concurrent_calls
        self.capacity = n * 6 // 5 if config.isolation_level == "shared" else n
        self.adaptive = config.isolation_level == "adaptive"
        self.max_wait = (
            None if config.max_wait is None else secs_to_nanos(config.max_wait)
        )
        slow = config.slow_call_duration
        self.slow = max(
            secs_to_nanos(config.timeout / 2.0 if slow is None else slow), 1
        )
        self._generation = 0
        self._next_ticket = 0
        self._start()
        track(self)

    def _start(self) -> None:
        """Empty, at the full limit, with no counts."""
        self._lock = threading.Lock()
        self.active = 0
        self.limit = self.capacity
        self._queue: deque[tuple[int, int | None]] = deque()  # (ticket, expires_at)
        self._decided: dict[int, Slot | None] = {}  # a granted slot, or None: expired
        self._epoch = 0
        self._credit = 0
        self._average: int | None = None
        self.admitted = self.waited = self.cancelled_waits = 0
        self.timed_out = self.running_after_timeout = self.granted = 0
        self.rejected = {"queue_full": 0, "max_wait": 0, "deadline": 0, "reentrant": 0}

    def _after_fork(self) -> None:
        """Empty, in a generation after every slot handed out before the fork; tickets go on."""
        self._generation += 1
        self._start()

    @property
    def id(self) -> int:
        """The bulkhead's id."""
        return self._id

    def owns(self, slot: Slot) -> bool:
        """Whether `slot` was handed out by this bulkhead."""
        return slot.owner == self._id

    def _slot(self, start: int | None, in_flight: int) -> Slot:
        epoch = self._epoch if self.adaptive else 0
        return Slot(self._id, self._generation, start, in_flight, epoch)

    def _admit(self, now: int) -> Slot:
        self.active += 1
        self.admitted += 1
        timed = self.adaptive or self.active >= self.limit
        return self._slot(now if timed else None, self.active)

    # -- admission --------------------------------------------------------------------------

    def try_acquire(self, now: Any) -> Slot | None:
        """A free slot when nobody waits (`now()` is called only if the call is timed)."""
        with self._lock:
            if self._queue or self.active >= self.limit:
                return None
            self.active += 1
            self.admitted += 1
            timed = self.adaptive or self.active >= self.limit
            return self._slot(now() if timed else None, self.active)

    def acquire(
        self, now: int, reentrant: bool, deadline_left: int | None
    ) -> tuple[str, Any, list[int]]:
        """("admit", slot), ("queued", ticket) or ("reject", Rejection), and tickets to wake."""
        with self._lock:
            woken = self._expire(now)
            if not self._queue and self.active < self.limit:
                return "admit", self._admit(now), woken
            why = self._refuse(reentrant, deadline_left)
            if why is not None:
                self.rejected[why.reason] += 1
                return "reject", why, woken
            self._next_ticket += 1
            ticket = self._next_ticket
            expires = (
                None if self.max_wait is None else min(now + self.max_wait, U64_MAX)
            )
            self._queue.append((ticket, expires))
            return "queued", ticket, woken

    def _refuse(self, reentrant: bool, deadline_left: int | None) -> Rejection | None:
        if reentrant:
            return Rejection("reentrant")
        position = len(self._queue) + 1
        if position > self.config.max_queue_size:
            return Rejection("queue_full")
        if deadline_left is None:
            return None
        expected = self.expected_wait(position)
        if deadline_left == 0 or (expected is not None and deadline_left < expected):
            return Rejection("deadline", deadline_left, expected)
        return None

    def expected_wait(self, position: int) -> int | None:
        """Mean slot-holding time x position / limit (None before any call was timed)."""
        if self._average is None:
            return None
        return min(self._average * position // max(self.limit, 1), U64_MAX)

    # -- waiters ----------------------------------------------------------------------------

    def claim(self, ticket: int, now: int) -> tuple[str, Any, list[int]]:
        """("granted", slot), ("waiting", expires_at) or ("rejected", Rejection), and wake-ups."""
        with self._lock:
            woken = [t for t in self._expire(now) if t != ticket]
            if ticket in self._decided:
                slot = self._decided.pop(ticket)
                if slot is None:
                    return "rejected", Rejection("max_wait"), woken
                self.granted -= 1
                self.waited += 1
                self.admitted += 1
                return "granted", slot, woken
            for t, expires in self._queue:
                if t == ticket:
                    return "waiting", expires, woken
            return "rejected", Rejection("gone"), woken

    def cancel(self, ticket: int, now: int) -> list[int]:
        """The waiter gives up; a slot already handed to it goes on. Returns tickets to wake."""
        with self._lock:
            for i, (t, _) in enumerate(self._queue):
                if t == ticket:
                    del self._queue[i]
                    self.cancelled_waits += 1
                    return []
            if self._decided.get(ticket, None) is not None:
                del self._decided[ticket]
                self.granted -= 1
                self.cancelled_waits += 1
                woken = self._expire(now)
                self._free_slot(now, woken)
                return woken
            self._decided.pop(ticket, None)
            return []

    def _expire(self, now: int) -> list[int]:
        woken = []
        while self._queue:
            ticket, expires = self._queue[0]
            if expires is None or expires > now:
                break
            self._queue.popleft()
            self._decided[ticket] = None
            self.rejected["max_wait"] += 1
            woken.append(ticket)
        return woken

    def _free_slot(self, now: int, woken: list[int]) -> None:
        # `active` still counts the slot being freed; after a decrease it may exceed the limit.
        if self.active <= self.limit and self._queue:
            ticket, _ = self._queue.popleft()
            self._hand_over(ticket, self.active, now, woken)
            return
        self.active -= 1

    def _grant_free(self, now: int, woken: list[int]) -> None:
        while self.active < self.limit and self._queue:
            ticket, _ = self._queue.popleft()
            self.active += 1
            self._hand_over(ticket, self.active, now, woken)

    def _hand_over(
        self, ticket: int, in_flight: int, now: int, woken: list[int]
    ) -> None:
        self._decided[ticket] = self._slot(now, in_flight)
        self.granted += 1
        woken.append(ticket)

    # -- endings ----------------------------------------------------------------------------

    def try_release(self, slot: Slot) -> bool:
        """The lock-free release of the core: only an untimed slot while nobody waits."""
        if slot.start is not None or slot.timed_out or slot.owner != self._id:
            return False
        with self._lock:
            if slot.generation != self._generation:
                return True
            if self._queue:
                return False
            self.active -= 1
            return True

    def release(self, slot: Slot, now: int, ending: str) -> list[int]:
        """Gives a slot back after a call that ended as `ending`; returns tickets to wake."""
        if slot.owner != self._id:
            return []
        with self._lock:
            if slot.generation != self._generation:
                return []
            if slot.timed_out:
                self.running_after_timeout = max(0, self.running_after_timeout - 1)
            duration = None if slot.start is None else max(0, now - slot.start)
            if duration is not None:
                self._average = (
                    duration
                    if self._average is None
                    else (self._average * 7 + duration) // 8
                )
            if self.adaptive and not slot.timed_out:
                if ending == SUCCESS:
                    self._adapt(slot, duration is not None and duration >= self.slow)
                elif ending == FAILURE:
                    self._adapt(slot, True)
            woken = self._expire(now)
            self._free_slot(now, woken)
            self._grant_free(now, woken)
            return woken

    def record_timeout(self, slot: Slot) -> None:
        """The call holding `slot` timed out (the slot stays taken until released)."""
        if slot.owner != self._id or slot.timed_out:
            return
        with self._lock:
            if slot.generation != self._generation:
                return
            slot.timed_out = True
            self.timed_out += 1
            self.running_after_timeout += 1
            if self.adaptive:
                self._adapt(slot, True)

    def _adapt(self, slot: Slot, dropped: bool) -> None:
        if slot.epoch != self._epoch:
            return  # a call from before the last decrease: the same episode
        if dropped:
            self._credit = 0
            self.limit = max(self.limit // 2, 1)
            self._epoch += 1
            return
        if slot.in_flight * 2 < self.limit or self.limit >= self.capacity:
            return
        self._credit += 1
        if self._credit >= self.limit:
            self._credit = 0
            self.limit += 1

    # -- stats ------------------------------------------------------------------------------

    def stats(self, now: int) -> tuple[dict[str, Any], list[int]]:
        """Counts at `now` (after expiring waiters), and tickets to wake."""
        with self._lock:
            woken = self._expire(now)
            rejected = sum(self.rejected.values())
            total = (
                self.admitted
                + len(self._queue)
                + self.granted
                + rejected
                + self.cancelled_waits
            )
            return {
                "active": self.active,
                "queued": len(self._queue),
                "limit": self.limit,
                "admitted": self.admitted,
                "waited": self.waited,
                "rejected": dict(self.rejected),
                "rejected_total": rejected,
                "total": total,
                "cancelled_waits": self.cancelled_waits,
                "timed_out": self.timed_out,
                "running_after_timeout": self.running_after_timeout,
                "average": self._average,
            }, woken
