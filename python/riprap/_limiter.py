"""Rate limiting: `RateLimiter` and `KeyedRateLimiter`.

How a limited call runs:

* The limiter is a core object (Rust, or the reference twin): GCRA on one atomic word, so
  `try_acquire` is one clock read and one compare-and-swap, and a decorated sync function is a
  native object whose success path adds no Python frame.
* Waiting callers reserve their slot up front (`_reserve`), then wait for it: sync callers in the
  core (GIL released, Ctrl-C honoured), async callers here. Reserving first is what serves
  waiters in arrival order and keeps `try_acquire` from taking a queued waiter's token.
* A waiter that is cancelled (or interrupted) gives its reservation back (`_cancel`); the
  waiters behind it move up and are woken through the callback they registered (`_watch`).
  Control-flow exceptions pass through untouched; only the reservation is undone.
* Async waits sleep on the event loop (or on the clock's `asleep`); no loop is captured at
  construction, so one limiter serves any number of loops and threads.
* With `storage=`, the constructor returns a subclass from `riprap._redis.limiter` whose
  methods ask Redis first and whose native part is the local fallback. Without it, nothing
  here runs on a call: `try_acquire` is the core's own method.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar, cast, overload

from . import _deadlines as deadlines
from . import _registry, testing
from . import _validate as v
from ._backend import core
from ._clock import asleep_fn
from ._decorate import decorate, native_coroutine_function

__all__ = ["KeyedLimit", "KeyedRateLimiter", "RateLimiter", "construct"]

F = TypeVar("F", bound=Callable[..., Any])

_STOCK_ASLEEP = testing.ManualClock.asleep


def _instant(clock: object) -> bool:
    """Whether waiting on `clock` passes no real time (riprap's ManualClock advances at once)."""
    asleep = getattr(type(clock), "asleep", None)
    return asleep is None or asleep is _STOCK_ASLEEP


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


def _relay(woken: asyncio.Future[None], sleeper: asyncio.Future[object]) -> None:
    if woken.done() or sleeper.cancelled():
        _wake(woken)
        return
    exc = sleeper.exception()
    if exc is not None:
        woken.set_exception(exc)
    else:
        woken.set_result(None)


def construct(base: Any, cls: type, *args: Any, **kwargs: Any) -> Any:
    """`base(*args, **kwargs)` built as an instance of its subclass `cls`, on either backend.

    The native types build themselves in `__new__`, their reference twins in `__init__`; the
    façade classes below define both (`__init__` does nothing), so this is the one place that
    knows the difference.
    """
    if base.__init__ is object.__init__:
        return base.__new__(cls, *args, **kwargs)
    obj: Any = object.__new__(cls)
    base.__init__(obj, *args, **kwargs)
    return obj


def _shared_keywords(local_fraction: object, time_source: object) -> None:
    """The Redis-only keywords without `storage=`: checked, then unused."""
    from ._redis.shared import check_unshared  # noqa: PLC0415 - imports no redis

    check_unshared(local_fraction, time_source)


async def _sleep_until_due(limiter: Any, ticket: int, args: tuple[Any, ...]) -> None:
    """Wait until the slot of `ticket` comes (`args` are what `_remaining` takes)."""
    clock = limiter.clock
    if clock is not None and _instant(clock):
        # A manual clock: jump to the slot. Nothing else runs meanwhile, so nothing moves it.
        while (left := limiter._remaining(*args)) > 0.0:
            await asleep_fn(clock)(left)
        return
    loop = asyncio.get_running_loop()
    while True:
        woken: asyncio.Future[None] = loop.create_future()
        # Ask to be woken *before* reading the wait: a cancellation on another thread that
        # moves the slot after the read then still wakes this waiter, which reads again.
        limiter._watch(
            ticket, functools.partial(loop.call_soon_threadsafe, _wake, woken)
        )
        try:
            left = limiter._remaining(*args)
            if left <= 0.0:
                return
            if clock is None:
                timer = loop.call_later(left, _wake, woken)
                try:
                    await woken
                finally:
                    timer.cancel()
            else:
                # A clock whose asleep suspends (a virtual-time test clock): race it with the
                # wake-up, so a waiter whose slot moved earlier does not oversleep.
                sleeper = asyncio.ensure_future(clock.asleep(left))
                sleeper.add_done_callback(functools.partial(_relay, woken))
                try:
                    await woken
                finally:
                    sleeper.cancel()
        finally:
            limiter._unwatch(ticket)


def _check_deadline(limiter: Any, args: tuple[Any, ...]) -> None:
    """`TimeoutExceededError` if the wait would end after an enclosing deadline."""
    left = deadlines.remaining()
    if left is not None and limiter._remaining(*args) > left:
        raise deadlines.exceeded()


async def _wait_for_slot(limiter: Any, ticket: int, args: tuple[Any, ...]) -> None:
    """Wait for `ticket`'s slot; if the wait ends in any exception, give the slot back.

    A wait that would end after an enclosing `riprap.deadline` / `riprap.timeout` is not
    started: `TimeoutExceededError` at once.
    """
    try:
        _check_deadline(limiter, args)
        await _sleep_until_due(limiter, ticket, args)
    except BaseException:
        limiter._cancel(*args)
        raise
    limiter._complete(*args)


class RateLimiter(core.RateLimiter):
    """A token-bucket rate limiter (GCRA): `rate` tokens per second, at most `burst` at once.

    The bucket starts full, so over any interval of length `t` it admits at most
    `burst + rate x t` tokens (the first `burst` at once), and a caller that keeps asking gets at
    least 99 % of `rate` (exactly `rate`, up to the 0.1 % representation limit below). Nothing
    is stored per call and nothing runs in the background; one limiter serves any number of
    threads and event loops.

    Use it as `limiter.try_acquire()` (never waits), `limiter.acquire(n, timeout=...)` (blocks
    with the GIL released), `await limiter.acquire_async(n, timeout=...)` (FIFO, cancellation-
    safe), `with limiter:` / `async with limiter:` (one token), or `@limiter` on a sync or async
    function. Waiting callers are served in arrival order and `try_acquire` never takes a token
    a waiter is queued for; a waiter that is cancelled gives its slot back and those behind it
    move up. A token taken is spent, whatever the call then does.

    Args:
        rate: Tokens per second, finite and > 0. Every rate up to 1e6/s works; tokens are spaced
            a whole number of nanoseconds apart (1/rate rounded up, so never faster than asked),
            and a higher rate whose spacing would be off by more than 0.1 % is refused.
        burst: The bucket size, >= 1 (default `max(1, rate)`: `rate=0.5` gives one token at a
            time, one every 2 s). It need not be a whole number.
        name: Reported in `RateLimitExceeded` and `get_stats()`.
        on_limit: What `@limiter` and `with limiter:` do without a token: "wait" (default) or
            "raise" `RateLimitExceeded(name, retry_after)` at once.
        clock: A `riprap.testing.ManualClock` (waits then advance it instead of sleeping).
        storage: Keep the bucket in Redis, shared by every process and host that uses the
            same `name` (required then): a `redis://` URL, a redis-py client or a
            `riprap.RedisStorage`. See the README's "Shared state on Redis".
        on_storage_error: What a call does when Redis fails: "local" (default: this
            process's own bucket decides, at `local_fraction` of the rate), "fail_open"
            (admit) or "fail_closed" (refuse; the storage error is the `__cause__`).
        local_fraction: The local fallback's share of `rate` and `burst`, in (0, 1]
            (default 1.0); set it to 1/N for N processes so an outage does not multiply the
            fleet's allowance by N.
        time_source: "server" (default: Redis's own clock decides) or "client" (this
            process's clock, for servers that refuse TIME in scripts: the hosts' clocks must
            then agree).

    `get_stats()` returns `name`, `rate`, `burst`, and the counters since creation: `admitted`
    (requests granted, at once or after waiting), `rejected` (`try_acquire` returned False, or
    `RateLimitExceeded` was raised), `waited` (granted requests that waited first). A cancelled
    waiter counts in none of them.

    A named limiter is visible to `riprap.ResilienceMonitor` and `riprap.metrics` while it lives;
    an unnamed one is not.

    .. versionadded:: 0.1.0
    """

    def __new__(
        cls,
        rate: float,
        burst: float | None = None,
        *,
        name: str | None = None,
        on_limit: str = "wait",
        clock: Any = None,
        storage: object = None,
        on_storage_error: str = "local",
        local_fraction: float = 1.0,
        time_source: str = "server",
    ) -> Self:
        if storage is not None:
            from ._redis.limiter import build_limiter  # noqa: PLC0415 - optional

            return cast(
                Self,
                build_limiter(
                    cls,
                    rate,
                    burst,
                    name=name,
                    on_limit=on_limit,
                    clock=clock,
                    storage=storage,
                    on_storage_error=on_storage_error,
                    local_fraction=local_fraction,
                    time_source=time_source,
                ),
            )
        _shared_keywords(local_fraction, time_source)
        return cast(
            Self,
            construct(
                core.RateLimiter,
                cls,
                rate,
                burst,
                name=name,
                on_limit=on_limit,
                clock=clock,
                on_storage_error=on_storage_error,
            ),
        )

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        """Everything is built in `__new__` (see `construct`); a named limiter is monitored."""
        if self.name is not None:
            _registry.track(_registry.RATE_LIMITER, self, self.name)

    async def acquire_async(self, n: int = 1, timeout: float | None = None) -> None:
        """Take `n` tokens, waiting asynchronously (first come, first served).

        Raises:
            RateLimitExceeded: at once (reserving nothing) if the wait would exceed `timeout`.
            ValueError: `n` is not a whole number in [1, burst].
        """
        ticket = self._reserve(n, timeout)
        if ticket:
            await _wait_for_slot(self, ticket, (ticket,))

    async def __aenter__(self) -> RateLimiter:
        ticket = self._reserve(1, 0.0 if self.on_limit == "raise" else None)
        if ticket:
            await _wait_for_slot(self, ticket, (ticket,))
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    def __call__(self, func: F) -> F:
        """Limit every call of `func` (sync or async, a method, a static or class method).

        Each call takes one token first, waiting or raising as `on_limit` says. The wrapper
        keeps `__wrapped__`, `__name__`, the signature and `inspect.iscoroutinefunction`.
        """
        return cast(
            F,
            decorate(
                func,
                "riprap.RateLimiter",
                native=lambda f: core.LimitedCall(f, self),
                coroutine=lambda f: _limit_async_call(f, self),
            ),
        )


def _limit_async_call(
    func: Callable[..., Awaitable[Any]], limiter: RateLimiter
) -> Callable[..., Any]:
    """The async decorator: a native coroutine function, or the Python wrapper below.

    Each call of the native one is a riprap `Coroutine` that takes its token when first resumed
    (never when the function is called: a call that is never awaited, or an outer layer that
    rejects first, takes none) and then drives the user's coroutine; with no token at once it
    continues in `_wait_then`. An async callable that `inspect` cannot see as a coroutine
    function gets the Python wrapper only.
    """
    wrapper = core.LimitedAsyncCall(
        func, limiter, functools.partial(_wait_then, limiter)
    )
    if native_coroutine_function(wrapper, func):
        return wrapper
    return _limit_async(func, limiter)


async def _wait_then(limiter: RateLimiter, inner: Any) -> Any:
    """The rest of a call that found no token at once.

    Reserves its slot (or raises at once with `on_limit="raise"`), waits for it, then awaits
    the user's coroutine `inner`.
    """
    try:
        ticket = limiter._reserve(1, 0.0 if limiter.on_limit == "raise" else None)
        if ticket:
            await _wait_for_slot(limiter, ticket, (ticket,))
    except BaseException:
        inner.close()  # never started: no "never awaited" warning
        raise
    return await inner


def _limit_async(
    func: Callable[..., Awaitable[Any]], limiter: RateLimiter
) -> Callable[..., Any]:
    reserve = limiter._reserve
    timeout = 0.0 if limiter.on_limit == "raise" else None

    @functools.wraps(func)
    async def limited(*args: Any, **kwargs: Any) -> Any:
        ticket = reserve(1, timeout)
        if ticket:
            await _wait_for_slot(limiter, ticket, (ticket,))
        return await func(*args, **kwargs)

    return limited


class KeyedRateLimiter(core.KeyedRateLimiter):
    """One token bucket per key (a client IP, a user id, an API key), with bounded memory.

    Every key gets its own bucket of `rate` tokens per second and at most `burst`, starting full,
    with exactly the semantics of `RateLimiter`. Keys are `int`, `str` or `bytes` (`True` is not
    `1` here: `bool` is refused). A key costs one `u64` of state plus its own bytes.

    Memory is bounded by `max_keys`, exactly: the table holds `max_keys` keys before it forgets
    any, and concurrent inserts never take it past that. When a new key finds it full, keys whose
    bucket is full again are forgotten first, all of them (which changes nothing: a new key
    starts full); then, if fewer than `max(1, max_keys // 64)` were, the keys closest to full
    until that many have gone (smallest theoretical arrival time first, ties broken by key
    order). Keys with waiters are never forgotten; if every key has one, the new key goes in
    over `max_keys` rather than drop a reservation. With `idle_ttl`, keys whose bucket has been
    full for that long are also forgotten, the whole table checked at most once per `idle_ttl`
    when it is used (no sweeper thread).

    Use `try_acquire(key, n=1)`, `acquire(key, n=1, timeout=None)`,
    `await acquire_async(key, n=1, timeout=None)`, `len(limiter)` (keys tracked), and the
    decorator `@limiter(key=lambda request: request.client_ip, on_limit="raise")`.

    Args:
        rate: Tokens per second per key (see `RateLimiter`).
        burst: Bucket size per key (default `max(1, rate)`).
        name: Reported in `RateLimitExceeded` and `get_stats()`.
        max_keys: The most keys tracked at once (>= 1).
        idle_ttl: Seconds after which a key whose bucket is full is forgotten (None: only when
            room is needed).
        clock: A `riprap.testing.ManualClock`.
        storage: Keep the buckets in Redis, shared by every process using the same `name`
            (see `RateLimiter`); `len()`, `max_keys` and `idle_ttl` then concern the local
            fallback's table, and each bucket in Redis expires on its own once full.
        on_storage_error: "local" (default), "fail_open" or "fail_closed" (see `RateLimiter`).
        local_fraction: The local fallback's share of `rate` and `burst` (see `RateLimiter`).
        time_source: "server" (default) or "client" (see `RateLimiter`).

    `get_stats()` returns what `RateLimiter.get_stats()` does, over all keys, plus `keys` (tracked
    now) and `evicted` (keys forgotten to bound memory since creation). A named keyed limiter is
    visible to `riprap.ResilienceMonitor` and `riprap.metrics` as one limiter (its totals over
    all keys: never one series per key).

    .. versionadded:: 0.1.0
    """

    def __new__(
        cls,
        rate: float,
        burst: float | None = None,
        *,
        name: str | None = None,
        max_keys: int = 1_000_000,
        idle_ttl: float | None = None,
        clock: Any = None,
        storage: object = None,
        on_storage_error: str = "local",
        local_fraction: float = 1.0,
        time_source: str = "server",
    ) -> Self:
        if storage is not None:
            from ._redis.keyed import build_keyed  # noqa: PLC0415 - optional

            return cast(
                Self,
                build_keyed(
                    cls,
                    rate,
                    burst,
                    name=name,
                    max_keys=max_keys,
                    idle_ttl=idle_ttl,
                    clock=clock,
                    storage=storage,
                    on_storage_error=on_storage_error,
                    local_fraction=local_fraction,
                    time_source=time_source,
                ),
            )
        _shared_keywords(local_fraction, time_source)
        return cast(
            Self,
            construct(
                core.KeyedRateLimiter,
                cls,
                rate,
                burst,
                name=name,
                max_keys=max_keys,
                idle_ttl=idle_ttl,
                clock=clock,
                on_storage_error=on_storage_error,
            ),
        )

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        """Everything is built in `__new__` (see `construct`); a named limiter is monitored."""
        if self.name is not None:
            _registry.track(_registry.RATE_LIMITER, self, self.name)

    async def acquire_async(
        self, key: object, n: int = 1, timeout: float | None = None
    ) -> None:
        """Take `n` tokens from `key`'s bucket, waiting asynchronously (first come, first served).

        Raises:
            RateLimitExceeded: at once (reserving nothing) if the wait would exceed `timeout`.
            TypeError: `key` is not an int, str or bytes.
        """
        ticket = self._reserve(key, n, timeout)
        if ticket:
            await _wait_for_slot(self, ticket, (key, ticket))

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
    ) -> KeyedLimit: ...
    def __call__(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        key: Callable[..., object] | None = None,
        on_limit: str = "wait",
    ) -> Any:
        """Limit a function per key: `@limiter(key=lambda *args, **kwargs: ...)`.

        `key` is called with the function's own arguments before each call and returns the
        key; the call then takes one token from that key's bucket, waiting (`on_limit="wait"`,
        default) or raising `RateLimitExceeded` at once (`on_limit="raise"`). If `key` raises,
        its error propagates and no token is taken.
        """
        if key is None:
            raise TypeError(
                "KeyedRateLimiter needs key=: use "
                "@limiter(key=lambda request: request.client_ip)"
            )
        if not callable(key):
            raise TypeError(f"key must be callable, got {type(key).__name__}")
        policy = KeyedLimit(self, key, on_limit)
        return policy if func is None else policy(func)

    def _limit_by_key(
        self, func: Callable[..., Any], key: Callable[..., object], on_limit: str
    ) -> Any:
        # What a `KeyedLimit` decorates with; a limiter whose buckets live elsewhere (Redis)
        # decorates its own way.
        return decorate(
            func,
            "riprap.KeyedRateLimiter",
            native=lambda g: core.KeyedLimitedCall(
                g, core.KeyedLimit(self, key, on_limit)
            ),
            coroutine=lambda g: _limit_async_keyed(g, self, key, v.on_limit(on_limit)),
        )


class KeyedLimit:
    """A keyed limiter applied with one key function: `limiter(key=...)` returns one.

    It is the decorator (`@limiter(key=lambda request: request.client_ip)`) and the pipeline
    layer (`riprap.Pipeline(..., limiter(key=...))`) of a keyed limiter.

    Attributes:
        limiter: The keyed limiter.
        key: Called with the function's arguments; returns the key.
        on_limit: "wait" or "raise".
    """

    __slots__ = ("_raise", "key", "limiter", "on_limit")

    def __init__(
        self, limiter: KeyedRateLimiter, key: Callable[..., object], on_limit: str
    ) -> None:
        self._raise = v.on_limit(on_limit)
        self.limiter = limiter
        self.key = key
        self.on_limit = on_limit

    def __call__(self, func: F) -> F:
        """Limit each call of `func` per key (sync or async, methods too)."""
        return cast(F, self.limiter._limit_by_key(func, self.key, self.on_limit))

    def __repr__(self) -> str:
        return f"<riprap.KeyedLimit {self.limiter!r} key={self.key!r}>"


def _limit_async_keyed(
    func: Callable[..., Awaitable[Any]],
    limiter: KeyedRateLimiter,
    key: Callable[..., object],
    raise_on_limit: bool,
) -> Callable[..., Any]:
    reserve = limiter._reserve
    timeout = 0.0 if raise_on_limit else None

    @functools.wraps(func)
    async def limited(*args: Any, **kwargs: Any) -> Any:
        k = key(*args, **kwargs)
        ticket = reserve(k, 1, timeout)
        if ticket:
            await _wait_for_slot(limiter, ticket, (k, ticket))
        return await func(*args, **kwargs)

    return limited
