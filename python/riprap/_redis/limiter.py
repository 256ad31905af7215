"""Rate limiters whose buckets live in Redis.

What `RateLimiter(..., storage=...)` builds (`keyed.py` has the keyed twin, `gcra.py` the
bucket both use).

How it is put together: `RedisRateLimiter` subclasses the public `RateLimiter`, whose native part
(the active backend's core) is built at `rate x local_fraction` and is the *local fallback*:
it decides when Redis cannot. The methods users call (`try_acquire`, `acquire`,
`acquire_async`, `with`, `async with`, the decorator) are overridden here to ask Redis first,
with one `EVALSHA` of the GCRA script per decision. A limiter without `storage=` never sees this
module: its path is exactly as fast as before.

The shared bucket is one key, `<prefix>:{<name>}:gcra`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from .. import _validate as v
from .._backend import core
from .._decorate import decorate
from .._limiter import RateLimiter, construct
from .._reference._limiter import quota_arg
from .._stats import SharedRateLimiterStats
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

__all__ = ["RedisRateLimiter", "build_limiter"]

F = TypeVar("F", bound=Callable[..., Any])


_native = core.RateLimiter


class RedisRateLimiter(SharedBucket, RateLimiter):
    """A `RateLimiter` whose bucket lives in Redis, shared by every process using its name.

    Built by `RateLimiter(..., storage=...)`; see the README's "Shared state on Redis".
    """

    _public = "RateLimiter"
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
        if reply == ADMITTED:
            b.counters.admit()
            return True
        b.counters.reject()
        return False

    def acquire(self, n: int = 1, timeout: float | None = None) -> None:
        """Takes `n` tokens, sleeping until they are available (see `RateLimiter.acquire`)."""
        b = self._bucket
        c, bound = v.cost(b.quota, n), wait_bound(timeout)
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
        if reply == ADMITTED:
            b.counters.admit()
        elif reply[0] == REFUSED:
            raise b.refused(reply)
        else:
            b.sleep(self._key, reply)

    async def acquire_async(self, n: int = 1, timeout: float | None = None) -> None:
        """Takes `n` tokens, waiting asynchronously (see `RateLimiter.acquire_async`)."""
        b = self._bucket
        c, bound = v.cost(b.quota, n), wait_bound(timeout)
        try:
            reply = await b.aask(self._key, c, bound)
        except StorageError as e:
            mode = b.failed(e)
            if mode == "local":
                await RateLimiter.acquire_async(self, n, timeout)
            elif mode == "fail_closed":
                b.closed(e)
            return
        if reply == ADMITTED:
            b.counters.admit()
        else:
            await self._asettle(reply)

    async def _asettle(self, reply: Any) -> None:
        b = self._bucket
        if reply == ADMITTED:
            b.counters.admit()
        elif reply[0] == REFUSED:
            raise b.refused(reply)
        else:
            await b.asleep(self._key, reply)

    def _take_one(self, *_args: object, **_kwargs: object) -> None:
        """One token for `with` or a decorated call: wait, or raise, as `on_limit` says.

        A decorated call passes its arguments (a keyed limiter's key comes from them); one
        shared bucket needs none.
        """
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

    async def _atake_one(self, *_args: object, **_kwargs: object) -> None:
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
                native=lambda f: limited_sync(f, self._take_one),
                coroutine=lambda f: limited_async(f, self._atake_one),
            ),
        )

    def get_stats(self) -> SharedRateLimiterStats:
        """This process's counters, whoever decided (see `riprap.SharedRateLimiterStats`)."""
        return cast(
            SharedRateLimiterStats,
            self._bucket.stats(dict(_native.get_stats(self))),
        )


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
    local_rate, local_burst = local_quota(quota, opts.local_fraction, "limiter")
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
    limiter._bucket = Bucket(opts, quota)
    limiter._key = opts.key("gcra")
    return limiter
