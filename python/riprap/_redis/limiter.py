"""Rate limiters whose buckets live in Redis.

What `RateLimiter(..., storage=...)` and `KeyedRateLimiter(..., storage=...)` build.

How it is put together: `RedisRateLimiter` subclasses the public `RateLimiter`, whose native part
(the active backend's core) is built at `rate x local_fraction` and is the *local fallback*:
it decides when Redis cannot. The methods users call (`try_acquire`, `acquire`,
`acquire_async`, `with`, `async with`, the decorator) are overridden here to ask Redis first,
with one `EVALSHA` of the GCRA script per decision. A limiter without `storage=` never sees this
module: its path is exactly as fast as before.

The shared bucket is one key, `<prefix>:{<name>}:gcra` (a keyed limiter's keys are
`<prefix>:{<name>:<key>}:gcra`, so they spread over a cluster), holding the theoretical arrival
time in nanoseconds with a TTL of (TAT - now) + tau + T, set by the same script. Decisions are
the in-process core's, to the nanosecond: same emission interval, same tolerance, same rule.
Waiting callers reserve their slot in Redis and sleep here; one that gives up hands its slot
back if nobody reserved after it (else the tokens stay spent, which never over-admits).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast, overload

from .. import _validate as v
from .._backend import core
from .._clock import asleep_fn
from .._decorate import decorate
from .._errors import RateLimitExceeded
from .._limiter import KeyedRateLimiter, RateLimiter, construct
from .._reference._keyed import key_of
from .._reference._limiter import Quota, quota_arg
from .._stats import SharedKeyedRateLimiterStats, SharedRateLimiterStats
from .scripts import GCRA_ACQUIRE, GCRA_CANCEL
from .shared import Counters, Options, ms_ceil, options, wait_ns
from .storage import Script, StorageError

__all__ = ["RedisKeyedRateLimiter", "RedisRateLimiter", "build_keyed", "build_limiter"]

F = TypeVar("F", bound=Callable[..., Any])

_ACQUIRE = Script(GCRA_ACQUIRE)
_CANCEL = Script(GCRA_CANCEL)
_ADMITTED, _REFUSED = 1, 0
_NS = 1_000_000_000

# Cancellations still running (fire and forget, but not garbage-collected mid-flight).
_PENDING: set[asyncio.Task[None]] = set()


def _local_quota(shared: Quota, fraction: float, what: str) -> tuple[float, float]:
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


class _Bucket:
    """GCRA in Redis for one limiter: its quota as script arguments, and its counters."""

    __slots__ = ("counters", "margin", "opts", "quota", "tau")

    def __init__(self, opts: Options, quota: Quota) -> None:
        self.opts = opts
        self.quota = quota
        self.tau = str(quota.tolerance)
        self.margin = str(ms_ceil(quota.tolerance + quota.interval))
        self.counters = Counters()

    def args(self, cost: int, bound: str) -> tuple[str, ...]:
        return (self.opts.now_ns(), str(cost), self.tau, bound, self.margin)

    def ask(self, key: str | bytes, cost: int, bound: str) -> Any:
        """One decision (StorageError when Redis cannot make it)."""
        return self.opts.storage.run(_ACQUIRE, (key,), self.args(cost, bound))

    async def aask(self, key: str | bytes, cost: int, bound: str) -> Any:
        return await self.opts.storage.arun(_ACQUIRE, (key,), self.args(cost, bound))

    def refused(self, reply: Any) -> RateLimitExceeded:
        self.counters.add("rejected")
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
        self.counters.add("admitted")
        self.counters.add("waited")

    async def asleep(self, key: str | bytes, reply: Any) -> None:
        try:
            await asleep_fn(self.opts.clock)(wait_ns(reply) / _NS)
        except BaseException:
            # Do not await while cancelled: hand the slot back in a task of its own.
            task = asyncio.ensure_future(self._agive_back(key, reply))
            _PENDING.add(task)
            task.add_done_callback(_PENDING.discard)
            raise
        self.counters.add("admitted")
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
            self.counters.add("admitted")
        elif mode == "fail_closed":
            self.counters.add("rejected")
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


def _bound(timeout: object) -> str:
    wait = v.max_wait("timeout", timeout)
    return "" if wait is None else str(wait)


# -- RateLimiter ---------------------------------------------------------------------------------

_native = core.RateLimiter


class RedisRateLimiter(RateLimiter):
    """A `RateLimiter` whose bucket lives in Redis, shared by every process using its name.

    Built by `RateLimiter(..., storage=...)`; see the README's "Shared state on Redis".
    """

    _bucket: _Bucket
    _key: str

    def try_acquire(self, n: int = 1) -> bool:
        """Takes `n` tokens from the shared bucket if they are available now; never waits."""
        b = self._bucket
        c = v.cost(b.quota, n)
        try:
            reply = b.ask(self._key, c, "0")
        except StorageError as e:
            mode = b.failed(e)
            if mode == "local":
                return _native.try_acquire(self, n)
            return mode == "fail_open"
        if reply[0] == _ADMITTED:
            b.counters.add("admitted")
            return True
        b.counters.add("rejected")
        return False

    def acquire(self, n: int = 1, timeout: float | None = None) -> None:
        """Takes `n` tokens, sleeping until they are available (see `RateLimiter.acquire`)."""
        b = self._bucket
        c, bound = v.cost(b.quota, n), _bound(timeout)
        try:
            reply = b.ask(self._key, c, bound)
        except StorageError as e:
            mode = b.failed(e)
            if mode == "local":
                _native.acquire(self, n, timeout)
            elif mode == "fail_closed":
                b.closed(e)
            return
        self._settle(reply)

    def _settle(self, reply: Any) -> None:
        b = self._bucket
        if reply[0] == _ADMITTED:
            b.counters.add("admitted")
        elif reply[0] == _REFUSED:
            raise b.refused(reply)
        else:
            b.sleep(self._key, reply)

    async def acquire_async(self, n: int = 1, timeout: float | None = None) -> None:
        """Takes `n` tokens, waiting asynchronously (see `RateLimiter.acquire_async`)."""
        b = self._bucket
        c, bound = v.cost(b.quota, n), _bound(timeout)
        try:
            reply = await b.aask(self._key, c, bound)
        except StorageError as e:
            mode = b.failed(e)
            if mode == "local":
                await RateLimiter.acquire_async(self, n, timeout)
            elif mode == "fail_closed":
                b.closed(e)
            return
        await self._asettle(reply)

    async def _asettle(self, reply: Any) -> None:
        b = self._bucket
        if reply[0] == _ADMITTED:
            b.counters.add("admitted")
        elif reply[0] == _REFUSED:
            raise b.refused(reply)
        else:
            await b.asleep(self._key, reply)

    def _take_one(self) -> None:
        """One token for `with` or a decorated call: wait, or raise, as `on_limit` says."""
        b = self._bucket
        try:
            reply = b.ask(self._key, b.quota.interval, self._on_limit_bound)
        except StorageError as e:
            mode = b.failed(e)
            if mode == "local":
                _native.__enter__(self)
            elif mode == "fail_closed":
                b.closed(e)
            return
        self._settle(reply)

    async def _atake_one(self) -> None:
        b = self._bucket
        try:
            reply = await b.aask(self._key, b.quota.interval, self._on_limit_bound)
        except StorageError as e:
            mode = b.failed(e)
            if mode == "local":
                await RateLimiter.__aenter__(self)
            elif mode == "fail_closed":
                b.closed(e)
            return
        await self._asettle(reply)

    @property
    def _on_limit_bound(self) -> str:
        return "0" if self.on_limit == "raise" else ""

    def __enter__(self) -> RedisRateLimiter:
        self._take_one()
        return self

    async def __aenter__(self) -> RedisRateLimiter:
        await self._atake_one()
        return self

    def __call__(self, func: F) -> F:
        """Limit every call of `func` (sync or async) by the shared bucket."""
        return cast(
            F,
            decorate(
                func,
                "riprap.RateLimiter",
                native=lambda f: _sync_wrapper(f, self._take_one),
                coroutine=lambda f: _async_wrapper(f, self._atake_one),
            ),
        )

    def get_stats(self) -> SharedRateLimiterStats:
        """This process's counters, whoever decided (see `riprap.SharedRateLimiterStats`)."""
        return cast(
            SharedRateLimiterStats,
            self._bucket.stats(dict(_native.get_stats(self))),
        )

    @property
    def rate(self) -> float:
        """Tokens per second, shared by every process using this name."""
        return self._bucket.quota.rate

    @property
    def burst(self) -> float:
        """The shared bucket's size."""
        return self._bucket.quota.burst

    @property
    def storage(self) -> Any:
        """The `RedisStorage` holding the bucket."""
        return self._bucket.opts.storage

    def __repr__(self) -> str:
        q = self._bucket.quota
        return (
            f"RateLimiter(rate={q.rate!r}, burst={q.burst!r}, name={self.name!r}, "
            f"storage={str(self.storage)!r})"
        )


def _sync_wrapper(func: Callable[..., Any], take: Callable[[], None]) -> Any:
    def limited(*args: Any, **kwargs: Any) -> Any:
        take()
        return func(*args, **kwargs)

    return limited


def _async_wrapper(
    func: Callable[..., Awaitable[Any]], take: Callable[[], Awaitable[None]]
) -> Callable[..., Any]:
    @functools.wraps(func)
    async def limited(*args: Any, **kwargs: Any) -> Any:
        await take()
        return await func(*args, **kwargs)

    return limited


def build_limiter(
    cls: type[RateLimiter],
    rate: object,
    burst: object,
    *,
    name: object,
    on_limit: object,
    clock: object,
    storage: object,
    on_storage_error: object,
    local_fraction: object,
    time_source: object,
) -> RedisRateLimiter:
    """`RateLimiter(..., storage=...)`."""
    if cls is not RateLimiter and not issubclass(cls, RedisRateLimiter):
        raise TypeError(
            f"storage= is supported on riprap.RateLimiter, not on {cls.__name__}"
        )
    quota = quota_arg(rate, burst)
    opts = options(
        name,
        storage,
        on_storage_error=on_storage_error,
        local_fraction_=local_fraction,
        time_source_=time_source,
        clock=clock,
    )
    local_rate, local_burst = _local_quota(quota, opts.local_fraction, "limiter")
    target = cls if issubclass(cls, RedisRateLimiter) else RedisRateLimiter
    limiter = cast(
        RedisRateLimiter,
        construct(
            _native,
            target,
            local_rate,
            local_burst,
            name=opts.name,
            on_limit=on_limit,
            clock=clock,
        ),
    )
    limiter._bucket = _Bucket(opts, quota)
    limiter._key = opts.key("gcra")
    return limiter


# -- KeyedRateLimiter ----------------------------------------------------------------------------

_native_keyed = core.KeyedRateLimiter


def _encode(key: object) -> bytes:
    """A key as bytes that tell its type (1, "1" and b"1" are three keys, as in process)."""
    k = key_of(key)
    if isinstance(k, str):
        return b"s" + k.encode("utf-8", "surrogatepass")
    if isinstance(k, bytes):
        return b"b" + k
    return b"i" + str(k).encode()


class RedisKeyedRateLimiter(KeyedRateLimiter):
    """A `KeyedRateLimiter` whose buckets live in Redis, shared by every process using its name.

    Built by `KeyedRateLimiter(..., storage=...)`. `len()` and `max_keys`/`idle_ttl` concern
    the local fallback's table; the buckets in Redis expire on their own.
    """

    _bucket: _Bucket
    _head: bytes

    def _redis_key(self, key: object) -> bytes:
        return self._head + _encode(key) + b"}:gcra"

    def try_acquire(self, key: object, n: int = 1) -> bool:
        """Takes `n` tokens from `key`'s shared bucket if they are available now."""
        b = self._bucket
        c = v.cost(b.quota, n)
        try:
            reply = b.ask(self._redis_key(key), c, "0")
        except StorageError as e:
            mode = b.failed(e)
            if mode == "local":
                return _native_keyed.try_acquire(self, key, n)
            return mode == "fail_open"
        if reply[0] == _ADMITTED:
            b.counters.add("admitted")
            return True
        b.counters.add("rejected")
        return False

    def acquire(self, key: object, n: int = 1, timeout: float | None = None) -> None:
        """Takes `n` tokens from `key`'s shared bucket, sleeping until they are available."""
        b = self._bucket
        c, bound = v.cost(b.quota, n), _bound(timeout)
        rk = self._redis_key(key)
        try:
            reply = b.ask(rk, c, bound)
        except StorageError as e:
            mode = b.failed(e)
            if mode == "local":
                _native_keyed.acquire(self, key, n, timeout)
            elif mode == "fail_closed":
                b.closed(e)
            return
        if reply[0] == _ADMITTED:
            b.counters.add("admitted")
        elif reply[0] == _REFUSED:
            raise b.refused(reply)
        else:
            b.sleep(rk, reply)

    async def acquire_async(
        self, key: object, n: int = 1, timeout: float | None = None
    ) -> None:
        """Takes `n` tokens from `key`'s shared bucket, waiting asynchronously."""
        b = self._bucket
        c, bound = v.cost(b.quota, n), _bound(timeout)
        rk = self._redis_key(key)
        try:
            reply = await b.aask(rk, c, bound)
        except StorageError as e:
            mode = b.failed(e)
            if mode == "local":
                await KeyedRateLimiter.acquire_async(self, key, n, timeout)
            elif mode == "fail_closed":
                b.closed(e)
            return
        if reply[0] == _ADMITTED:
            b.counters.add("admitted")
        elif reply[0] == _REFUSED:
            raise b.refused(reply)
        else:
            await b.asleep(rk, reply)

    @overload
    def __call__(
        self, func: F, /, *, key: Callable[..., object], on_limit: str = "wait"
    ) -> F: ...
    @overload
    def __call__(
        self,
        func: None = None,
        /,
        *,
        key: Callable[..., object],
        on_limit: str = "wait",
    ) -> Callable[[F], F]: ...
    def __call__(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        key: Callable[..., object] | None = None,
        on_limit: str = "wait",
    ) -> Any:
        """Limit a function per key by the shared buckets (see `KeyedRateLimiter.__call__`)."""
        if key is None:
            raise TypeError(
                "KeyedRateLimiter needs key=: use "
                "@limiter(key=lambda request: request.client_ip)"
            )
        if not callable(key):
            raise TypeError(f"key must be callable, got {type(key).__name__}")
        timeout = 0.0 if v.on_limit(on_limit) else None
        get_key = key

        def take(*args: Any, **kwargs: Any) -> None:
            self.acquire(get_key(*args, **kwargs), 1, timeout)

        async def atake(*args: Any, **kwargs: Any) -> None:
            await self.acquire_async(get_key(*args, **kwargs), 1, timeout)

        def limit(f: F) -> F:
            return cast(
                F,
                decorate(
                    f,
                    "riprap.KeyedRateLimiter",
                    native=lambda g: _keyed_sync_wrapper(g, take),
                    coroutine=lambda g: _keyed_async_wrapper(g, atake),
                ),
            )

        return limit if func is None else limit(func)

    def get_stats(self) -> SharedKeyedRateLimiterStats:
        """As `RedisRateLimiter.get_stats`; `keys` and `evicted` are the local fallback's."""
        return cast(
            SharedKeyedRateLimiterStats,
            self._bucket.stats(dict(_native_keyed.get_stats(self))),
        )

    @property
    def rate(self) -> float:
        """Tokens per second per key, shared by every process using this name."""
        return self._bucket.quota.rate

    @property
    def burst(self) -> float:
        """Each shared bucket's size."""
        return self._bucket.quota.burst

    @property
    def storage(self) -> Any:
        """The `RedisStorage` holding the buckets."""
        return self._bucket.opts.storage

    def __repr__(self) -> str:
        q = self._bucket.quota
        return (
            f"KeyedRateLimiter(rate={q.rate!r}, burst={q.burst!r}, name={self.name!r}, "
            f"storage={str(self.storage)!r})"
        )


def _keyed_sync_wrapper(func: Callable[..., Any], take: Callable[..., None]) -> Any:
    def limited(*args: Any, **kwargs: Any) -> Any:
        take(*args, **kwargs)
        return func(*args, **kwargs)

    return limited


def _keyed_async_wrapper(
    func: Callable[..., Awaitable[Any]], take: Callable[..., Awaitable[None]]
) -> Callable[..., Any]:
    @functools.wraps(func)
    async def limited(*args: Any, **kwargs: Any) -> Any:
        await take(*args, **kwargs)
        return await func(*args, **kwargs)

    return limited


def build_keyed(
    cls: type[KeyedRateLimiter],
    rate: object,
    burst: object,
    *,
    name: object,
    max_keys: object,
    idle_ttl: object,
    clock: object,
    storage: object,
    on_storage_error: object,
    local_fraction: object,
    time_source: object,
) -> RedisKeyedRateLimiter:
    """`KeyedRateLimiter(..., storage=...)`."""
    if cls is not KeyedRateLimiter and not issubclass(cls, RedisKeyedRateLimiter):
        raise TypeError(
            f"storage= is supported on riprap.KeyedRateLimiter, not on {cls.__name__}"
        )
    quota = quota_arg(rate, burst)
    opts = options(
        name,
        storage,
        on_storage_error=on_storage_error,
        local_fraction_=local_fraction,
        time_source_=time_source,
        clock=clock,
    )
    local_rate, local_burst = _local_quota(quota, opts.local_fraction, "keyed limiter")
    target = cls if issubclass(cls, RedisKeyedRateLimiter) else RedisKeyedRateLimiter
    limiter = cast(
        RedisKeyedRateLimiter,
        construct(
            _native_keyed,
            target,
            local_rate,
            local_burst,
            name=opts.name,
            max_keys=max_keys,
            idle_ttl=idle_ttl,
            clock=clock,
        ),
    )
    limiter._bucket = _Bucket(opts, quota)
    limiter._head = f"{opts.storage.prefix}:{{{opts.name}:".encode(
        "utf-8", "surrogatepass"
    )
    return limiter
