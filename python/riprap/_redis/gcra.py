"""GCRA in Redis for one limiter.

Its quota as script arguments, its counters, and how a reserved slot is waited for or handed
back.

The shared bucket is one key holding the theoretical arrival time (TAT) in nanoseconds, with a
TTL of (TAT - now) + tau + T set by the same script. Decisions are the in-process core's, to the
nanosecond: same emission interval, same tolerance, same rule (the integer quota comes from the
reference's `Quota`, which the differential tests hold equal to the core's). Waiting callers
reserve their slot in Redis and sleep here; one that gives up hands its slot back if nobody
reserved after it (else the tokens stay spent, which never over-admits).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from .. import _validate as v
from .._clock import asleep_fn
from .._errors import RateLimitExceeded
from .._reference._limiter import Quota
from .scripts import GCRA_ACQUIRE, GCRA_CANCEL
from .shared import Counters, Options, ms_ceil, wait_ns
from .storage import Script, StorageError

__all__ = [
    "ADMITTED",
    "PENDING",
    "REFUSED",
    "Bucket",
    "SharedBucket",
    "limited_async",
    "limited_sync",
    "local_quota",
    "wait_bound",
]

_ACQUIRE = Script(GCRA_ACQUIRE)
_CANCEL = Script(GCRA_CANCEL)
#: What the GCRA script returns: 1 when admitted, else a list starting with one of these.
ADMITTED, REFUSED = 1, 0
_NS = 1_000_000_000

# Cancellations still running (fire and forget, but not garbage-collected mid-flight).
PENDING: set[asyncio.Task[None]] = set()


def local_quota(shared: Quota, fraction: float, what: str) -> tuple[float, float]:
    """The local fallback's rate and burst: the shared ones times `fraction` (burst >= 1)."""
    rate, burst = shared.rate * fraction, max(1.0, shared.burst * fraction)
    try:
        Quota(rate, burst)
    except ValueError as e:
        raise ValueError(
            f"local_fraction {v.py_float(fraction)}: the local fallback of this {what} "
            f"would run at {v.py_float(rate)}/s, which is not representable ({e})"
        ) from None
    return rate, burst


class Bucket:
    """One limiter's bucket (or buckets, keyed) in Redis."""

    __slots__ = ("_tail", "costs", "counters", "opts", "quota")

    def __init__(self, opts: Options, quota: Quota) -> None:
        self.opts = opts
        self.quota = quota
        margin = str(ms_ceil(quota.tolerance + quota.interval))
        self._tail = (*_pair(quota.tolerance), margin)
        # The cost of n tokens as script arguments, for every n (n <= burst, usually 1).
        self.costs: dict[int, tuple[str, str]] = {}
        self.counters = Counters()

    def args(self, cost: int, bound: str) -> tuple[str, ...]:
        """ARGV of the GCRA script: now, cost, tau, the wait bound, the TTL margin."""
        pair = self.costs.get(cost)
        if pair is None:
            pair = self.costs[cost] = _pair(cost)
        tau_s, tau_n, margin = self._tail
        return (self.opts.now_ns(), *pair, tau_s, tau_n, bound, margin)

    def ask(self, key: str | bytes, cost: int, bound: str) -> Any:
        """One decision (StorageError when Redis cannot make it)."""
        return self.opts.storage.run(_ACQUIRE, (key,), self.args(cost, bound))

    def aask(self, key: str | bytes, cost: int, bound: str) -> Awaitable[Any]:
        """`ask` for async callers (the coroutine of `arun`, with no frame of its own)."""
        return self.opts.storage.arun(_ACQUIRE, (key,), self.args(cost, bound))

    def refused(self, reply: Any) -> RateLimitExceeded:
        self.counters.reject()
        return RateLimitExceeded(self.opts.name, wait_ns(reply) / _NS)

    def sleep(self, key: str | bytes, reply: Any) -> None:
        """Sleep until a reserved slot; if the sleep ends in any exception, give it back."""
        seconds = wait_ns(reply) / _NS
        clock = self.opts.clock
        try:
            if clock is None:
                time.sleep(seconds)
            else:
                clock.sleep(seconds)
        except BaseException:
            self.give_back(key, reply)
            raise
        self.counters.admit()
        self.counters.add("waited")

    async def asleep(self, key: str | bytes, reply: Any) -> None:
        try:
            await asleep_fn(self.opts.clock)(wait_ns(reply) / _NS)
        except BaseException:
            # Do not await while cancelled: hand the slot back in a task of its own.
            task = asyncio.ensure_future(self._agive_back(key, reply))
            PENDING.add(task)
            task.add_done_callback(PENDING.discard)
            raise
        self.counters.admit()
        self.counters.add("waited")

    def give_back(self, key: str | bytes, reply: Any) -> None:
        # If Redis fails, the tokens stay spent: stricter, never looser.
        with contextlib.suppress(StorageError):
            self.opts.storage.run(_CANCEL, (key,), (reply[3], reply[4]))

    async def _agive_back(self, key: str | bytes, reply: Any) -> None:
        with contextlib.suppress(StorageError):
            await self.opts.storage.arun(_CANCEL, (key,), (reply[3], reply[4]))

    def failed(self, error: StorageError) -> str:
        """Count a failed call; return the mode that decides it."""
        mode = self.opts.mode
        self.counters.failed(error, decided_here=mode != "local")
        if mode == "fail_open":
            self.counters.admit()
        elif mode == "fail_closed":
            self.counters.reject()
        return mode

    def closed(self, error: StorageError) -> NoReturn:
        raise RateLimitExceeded(self.opts.name, 0.0) from error.__cause__

    def stats(self, native: dict[str, Any]) -> dict[str, Any]:
        c = self.counters
        native.update(
            rate=self.quota.rate,
            burst=self.quota.burst,
            admitted=native["admitted"] + c.admitted,
            rejected=native["rejected"] + c.rejected,
            waited=native["waited"] + c.waited,
            storage=str(self.opts.storage),
            storage_errors=c.storage_errors,
            fallback_decisions=c.fallback_decisions,
            local_fraction=self.opts.local_fraction,
            time_source=self.opts.time_source,
        )
        return native


def _pair(ns: int) -> tuple[str, str]:
    """Nanoseconds as the scripts take them: whole seconds and the nanoseconds left."""
    s, n = divmod(ns, _NS)
    return str(s), str(n)


def wait_bound(timeout: object) -> str:
    wait = v.max_wait("timeout", timeout)
    return "" if wait is None else str(wait)


class SharedBucket:
    """What the Redis limiters (plain and keyed) say of their shared buckets.

    Mixed in before the public class, so these read the shared quota, not the local fallback's.
    """

    __slots__ = ()
    _bucket: Bucket
    _public: str  # the public class's name, for the repr
    name: str | None

    @property
    def rate(self) -> float:
        """Tokens per second (per key, when keyed), shared by every process using this name."""
        return self._bucket.quota.rate

    @property
    def burst(self) -> float:
        """The shared bucket's size (each key's, when keyed)."""
        return self._bucket.quota.burst

    @property
    def storage(self) -> Any:
        """The `RedisStorage` holding the bucket(s)."""
        return self._bucket.opts.storage

    def __repr__(self) -> str:
        q = self._bucket.quota
        return (
            f"{self._public}(rate={q.rate!r}, burst={q.burst!r}, name={self.name!r}, "
            f"storage={str(self.storage)!r})"
        )


def limited_sync(func: Callable[..., Any], take: Callable[..., None]) -> Any:
    """`func` that first takes its token with `take(*args, **kwargs)`.

    The arguments are passed on because a keyed limiter's key function reads them.
    """

    def limited(*args: Any, **kwargs: Any) -> Any:
        take(*args, **kwargs)
        return func(*args, **kwargs)

    return limited


def limited_async(
    func: Callable[..., Awaitable[Any]], take: Callable[..., Awaitable[None]]
) -> Callable[..., Any]:
    """The coroutine-function twin of `limited_sync`."""

    @functools.wraps(func)
    async def limited(*args: Any, **kwargs: Any) -> Any:
        await take(*args, **kwargs)
        return await func(*args, **kwargs)

    return limited
