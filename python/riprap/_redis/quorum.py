"""The quorum breaker: `CircuitBreaker(..., storage=..., shared="quorum", quorum=0.5)`.

Why: with one shared state, a single process with a bad network path (a broken route, a sick
NIC, a noisy neighbour) opens the circuit for the whole fleet. That objection kept Polly from
shipping a distributed breaker (App-vNext/Polly#215, App-vNext/Polly#287). Here each process
keeps its own breaker, the in-process one, and publishes its verdict as an expiring vote; the
circuit opens for everyone only when at least `quorum` of the live processes vote open.

The rules, per call:

* This process's own breaker is OPEN: rejected (its own view); HALF_OPEN: its own trial calls
  decide, so it can close again by itself. Either way it votes "open".
* Its own breaker is CLOSED: it votes "closed" and counts the votes in the same script; if at
  least `quorum` of the live voters say open, the call is rejected with `CircuitOpenError`
  (`retry_after`: until the oldest open vote expires unless renewed).
* A vote lives for `max(timeout, 1 s)`; a process votes on every call while its own breaker is
  closed and renews an "open" vote at least every third of that, so a process that dies or
  stops calling drops out of the count. Votes and voter sets have TTLs like every key.

Listeners see this process's own transitions; `state` and `get_stats()["state"]` report the
effective state (OPEN when the quorum is open), with `quorum_open` and `quorum_live`.
"""

from __future__ import annotations

import os
import random
import threading
from typing import Any

from .. import _breaker as facade
from .. import _validate as v
from .._errors import CircuitOpenError
from .._fork import track
from . import scripts
from .engine import now_ns
from .shared import Counters, Options, ms_ceil, us_ceil
from .storage import Script, StorageError

__all__ = ["QuorumEngine", "check_quorum"]

_VOTE = Script(scripts.QUORUM_VOTE)
_US = 1_000_000


def check_quorum(value: object) -> float:
    """`quorum=`: a fraction of the live processes in (0, 1]."""
    q = v.check_float("quorum", v.number("quorum", value), 0.0, False)
    if q > 1.0:
        raise ValueError(f"quorum must be <= 1.0, got {v.py_float(q)}")
    return q


class QuorumEngine:
    """The engine of a quorum breaker: the local engine decides, Redis counts the votes."""

    mode_name = "quorum"

    def __init__(
        self,
        opts: Options,
        config: facade.CircuitBreakerConfig,
        local: Any,
        dispatch: Any,
        quorum: float,
    ) -> None:
        self.opts = opts
        self.local = local
        self.quorum = repr(check_quorum(quorum))
        lifetime = max(v.secs_to_nanos(config.timeout), 1_000_000_000)
        self.vote_us = us_ceil(lifetime)
        self.renew_ns = lifetime // 3
        self.ttl_ms = str(ms_ceil(lifetime) + 1000)
        self.keys = (opts.key("voters"), opts.key("open"))
        self.counters = Counters()
        self._after_fork()
        track(self)

    def _after_fork(self) -> None:
        """A forked child is a new voter with nothing published."""
        self._lock = threading.Lock()
        self.voter = f"{os.getpid()}-{random.getrandbits(48)}"
        self.published: tuple[bool, int] | None = None
        self.quorum_rejected = 0

    # -- votes -------------------------------------------------------------------------------

    def args(self, vote: str) -> tuple[str, ...]:
        return (
            self.opts.now_us(),
            self.voter,
            vote,
            str(self.vote_us),
            self.quorum,
            self.ttl_ms,
        )

    def _voted(self, vote: str) -> None:
        if vote:
            self.published = (vote == "1", now_ns(self.opts.clock))

    def vote(self, vote: str) -> Any:
        reply = self.opts.storage.run(_VOTE, self.keys, self.args(vote))
        self._voted(vote)
        return reply

    async def avote(self, vote: str) -> Any:
        reply = await self.opts.storage.arun(_VOTE, self.keys, self.args(vote))
        self._voted(vote)
        return reply

    def _stale(self, open_: bool) -> bool:
        """Whether this process's published vote must be renewed (or changed)."""
        p = self.published
        return (
            p is None
            or p[0] != open_
            or now_ns(self.opts.clock) - p[1] >= self.renew_ns
        )

    def _renew(self, open_: bool) -> None:
        if self._stale(open_):
            try:
                self.vote("1" if open_ else "0")
            except StorageError as e:
                self.counters.failed(e, decided_here=False)

    async def _arenew(self, open_: bool) -> None:
        if self._stale(open_):
            try:
                await self.avote("1" if open_ else "0")
            except StorageError as e:
                self.counters.failed(e, decided_here=False)

    def _counted(self, reply: Any) -> Any:
        """The local permit, unless the quorum is open."""
        if int(reply[0]):
            with self._lock:
                self.quorum_rejected += 1
            raise CircuitOpenError(self.opts.name, int(reply[3]) / _US)
        return self.local.acquire()

    def _fallback(self, error: StorageError) -> Any:
        mode = self.opts.mode
        self.counters.failed(error, decided_here=mode != "local")
        if mode == "fail_closed":
            with self._lock:
                self.quorum_rejected += 1
            exc = CircuitOpenError(self.opts.name, 0.0)
            raise exc from error.__cause__
        return (
            self.local.acquire()
        )  # "local" and "fail_open": this process's view decides

    # -- the engine's methods ------------------------------------------------------------------

    def acquire(self) -> Any:
        """Admit a call by this process's breaker and the quorum, or raise CircuitOpenError."""
        if self.local.state != "closed":
            self._renew(True)
            return self.local.acquire()
        try:
            reply = self.vote("0")
        except StorageError as e:
            return self._fallback(e)
        return self._counted(reply)

    async def aacquire(self) -> Any:
        if self.local.state != "closed":
            await self._arenew(True)
            return self.local.acquire()
        try:
            reply = await self.avote("0")
        except StorageError as e:
            return self._fallback(e)
        return self._counted(reply)

    def record(self, permit: Any, exc: BaseException | None = None) -> None:
        """Record the outcome locally; publish the vote if this process's verdict changed."""
        self.local.record(permit, exc)
        self._renew(self.local.state != "closed")

    async def arecord(self, permit: Any, exc: BaseException | None = None) -> None:
        self.local.record(permit, exc)
        await self._arenew(self.local.state != "closed")

    def release(self, permit: Any) -> None:
        """Give a permit back without an outcome."""
        self.local.release(permit)

    async def arelease(self, permit: Any) -> None:
        self.local.release(permit)

    def _quorum(self) -> tuple[bool, int, int] | None:
        """(open, open votes, live voters), renewing this process's vote (None: no Redis)."""
        open_ = self.local.state != "closed"
        try:
            reply = self.vote("1" if open_ else "0")
        except StorageError as e:
            self.counters.failed(e, decided_here=False)
            return None
        return bool(int(reply[0])), int(reply[1]), int(reply[2])

    @property
    def state(self) -> str:
        """The effective state: this process's own, or "open" when the quorum is open."""
        own = self.local.state
        if own != "closed":
            return str(own)
        counted = self._quorum()
        if counted is None:
            return "open" if self.opts.mode == "fail_closed" else "closed"
        return "open" if counted[0] else "closed"

    def stats(self) -> dict[str, Any]:
        """This process's breaker's stats, with the effective state and the vote counts."""
        stats = dict(self.local.stats())
        counted = self._quorum()
        if stats["state"] == "closed" and (
            (counted is None and self.opts.mode == "fail_closed")
            or (counted is not None and counted[0])
        ):
            stats["state"] = "open"
        with self._lock:
            stats["total_rejected"] += self.quorum_rejected
            stats["total_calls"] += self.quorum_rejected
        c = self.counters
        stats.update(
            storage=str(self.opts.storage),
            storage_errors=c.storage_errors,
            fallback_decisions=c.fallback_decisions,
            shared=self.mode_name,
            state_lost=0,
            quorum_open=0 if counted is None else counted[1],
            quorum_live=0 if counted is None else counted[2],
        )
        return stats

    def reset(self) -> None:
        """Close this process's breaker (its vote becomes "closed")."""
        self.local.reset()
        self._renew(False)

    def force_open(self) -> None:
        """Open this process's breaker (its vote becomes "open")."""
        self.local.force_open()
        self._renew(True)
