"""Keyed rate limiters whose buckets live in Redis (`KeyedRateLimiter(..., storage=...)`).

The same as `limiter.py`, per key. Each key is its own Redis key,
`<prefix>:{<name>:<type><key>}:gcra`: its own hash tag, so the keys of one limiter spread over
a cluster, and a type letter, so `1`, `"1"` and `b"1"` stay three keys as they are in process.
`len()`, `max_keys` and `idle_ttl` concern the local fallback's table; the buckets in Redis
expire on their own once full.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from .. import _validate as v
from .._backend import core
from .._decorate import decorate
from .._limiter import KeyedRateLimiter, construct
from .._reference._keyed import key_of
from .._reference._limiter import quota_arg
from .._stats import SharedKeyedRateLimiterStats
from .gcra import (
    ADMITTED,
    REFUSED,
    Bucket,
    SharedBucket,
    limited_async,
    limited_sync,
    local_quota,
    wait_bound,
)
from .shared import options
from .storage import StorageError

__all__ = ["RedisKeyedRateLimiter", "build_keyed"]

F = TypeVar("F", bound=Callable[..., Any])

_native_keyed = core.KeyedRateLimiter


def _encode(key: object) -> bytes:
    """A key as bytes that tell its type (1, "1" and b"1" are three keys, as in process)."""
    k = key_of(key)
    if isinstance(k, str):
        return b"s" + k.encode("utf-8", "surrogatepass")
    if isinstance(k, bytes):
        return b"b" + k
    return b"i" + str(k).encode()


class RedisKeyedRateLimiter(SharedBucket, KeyedRateLimiter):
    """A `KeyedRateLimiter` whose buckets live in Redis, shared by every process using its name.

    Built by `KeyedRateLimiter(..., storage=...)`. `len()` and `max_keys`/`idle_ttl` concern
    the local fallback's table; the buckets in Redis expire on their own.
    """

    _public = "KeyedRateLimiter"
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
        if reply == ADMITTED:
            b.counters.admit()
            return True
        b.counters.reject()
        return False

    def acquire(self, key: object, n: int = 1, timeout: float | None = None) -> None:
        """Takes `n` tokens from `key`'s shared bucket, sleeping until they are available."""
        b = self._bucket
        c, bound = v.cost(b.quota, n), wait_bound(timeout)
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
        if reply == ADMITTED:
            b.counters.admit()
        elif reply[0] == REFUSED:
            raise b.refused(reply)
        else:
            b.sleep(rk, reply)

    async def acquire_async(
        self, key: object, n: int = 1, timeout: float | None = None
    ) -> None:
        """Takes `n` tokens from `key`'s shared bucket, waiting asynchronously."""
        b = self._bucket
        c, bound = v.cost(b.quota, n), wait_bound(timeout)
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
        if reply == ADMITTED:
            b.counters.admit()
        elif reply[0] == REFUSED:
            raise b.refused(reply)
        else:
            await b.asleep(rk, reply)

    def _limit_by_key(
        self, func: Callable[..., Any], key: Callable[..., object], on_limit: str
    ) -> Any:
        # `limiter(key=...)` returns a `KeyedLimit` that decorates through here: each call
        # takes its token from the shared bucket of its key.
        timeout = 0.0 if v.on_limit(on_limit) else None

        def take(*args: Any, **kwargs: Any) -> None:
            self.acquire(key(*args, **kwargs), 1, timeout)

        async def atake(*args: Any, **kwargs: Any) -> None:
            await self.acquire_async(key(*args, **kwargs), 1, timeout)

        return decorate(
            func,
            "riprap.KeyedRateLimiter",
            native=lambda g: limited_sync(g, take),
            coroutine=lambda g: limited_async(g, atake),
        )

    def get_stats(self) -> SharedKeyedRateLimiterStats:
        """As `RedisRateLimiter.get_stats`; `keys` and `evicted` are the local fallback's."""
        return cast(
            SharedKeyedRateLimiterStats,
            self._bucket.stats(dict(_native_keyed.get_stats(self))),
        )


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
    local_rate, local_burst = local_quota(quota, opts.local_fraction, "keyed limiter")
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
    limiter._bucket = Bucket(opts, quota)
    limiter._head = f"{opts.storage.prefix}:{{{opts.name}:".encode(
        "utf-8", "surrogatepass"
    )
    return limiter
