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
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, overload

from . import _registry, testing
from . import _validate as v
from ._backend import core
from ._clock import asleep_fn
from ._decorate import decorate, native_coroutine_function

__all__ = ["KeyedRateLimiter", "RateLimiter"]

F = TypeVar("F", bound=Callable[..., Any])

_STOCK_ASLEEP = testing.ManualClock.asleep

# The Rust classes are built by `__new__`; their reference twins by `__init__`, which the façade
# subclasses must then call.
_LIMITER_INIT: Any = core.RateLimiter.__init__
_KEYED_INIT: Any = core.KeyedRateLimiter.__init__


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


async def _sleep_until_due(limiter: Any, ticket: int, args: tuple[Any, ...]) -> None:
    """Wait until the slot of `ticket` comes (`args` are what `_remaining` takes)."""
    clock = limiter.clock
    instant = clock is not None and _instant(clock)
    while (left := limiter._remaining(*args)) > 0.0:
        if instant:
            # A manual clock: jump to the slot. Nothing else runs meanwhile, so nothing moves it.
            await asleep_fn(clock)(left)
            continue
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        limiter._watch(
            ticket, functools.partial(loop.call_soon_threadsafe, _wake, woken)
        )
        try:
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


async def _wait_for_slot(limiter: Any, ticket: int, args: tuple[Any, ...]) -> None:
    """Wait for `ticket`'s slot; if the wait ends in any exception, give the slot back."""
    try:
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
        storage: Shared (Redis) state: not implemented yet; must be None.
        on_storage_error: "local" (default), "fail_open" or "fail_closed": what to do when
            the storage fails. Validated now; it takes effect with `storage`.

    `get_stats()` returns `name`, `rate`, `burst`, and the counters since creation: `admitted`
    (requests granted, at once or after waiting), `rejected` (`try_acquire` returned False, or
    `RateLimitExceeded` was raised), `waited` (granted requests that waited first). A cancelled
    waiter counts in none of them.

    A named limiter is visible to `riprap.ResilienceMonitor` and `riprap.metrics` while it lives;
    an unnamed one is not.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        name: str | None = None,
        on_limit: str = "wait",
        clock: object = None,
        storage: object = None,
        on_storage_error: str | None = None,
    ) -> None:
        if _LIMITER_INIT is not object.__init__:
            _LIMITER_INIT(
                self,
                rate,
                burst,
                name=name,
                on_limit=on_limit,
                clock=clock,
                storage=storage,
                on_storage_error=on_storage_error,
            )
        if name is not None:
            _registry.track(_registry.RATE_LIMITER, self, name)

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

    A call of the native one that gets its token at once returns the user's own coroutine
    (nothing stands between the caller and it); any other call returns the Python wrapper's
    coroutine, which reserves its slot (or raises) when first resumed. An async callable that
    `inspect` cannot see as a coroutine function gets the Python wrapper only.
    """
    slow = _limit_async(func, limiter)
    wrapper = core.LimitedAsyncCall(func, limiter, slow)
    if native_coroutine_function(wrapper, func):
        return wrapper
    return slow


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
        storage: Shared (Redis) state: not implemented yet; must be None.
        on_storage_error: "local" (default), "fail_open" or "fail_closed": what to do when
            the storage fails. Validated now; it takes effect with `storage`.

    `get_stats()` returns what `RateLimiter.get_stats()` does, over all keys, plus `keys` (tracked
    now) and `evicted` (keys forgotten to bound memory since creation). A named keyed limiter is
    visible to `riprap.ResilienceMonitor` and `riprap.metrics` as one limiter (its totals over
    all keys: never one series per key).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        name: str | None = None,
        max_keys: int = 1_000_000,
        idle_ttl: float | None = None,
        clock: object = None,
        storage: object = None,
        on_storage_error: str | None = None,
    ) -> None:
        if _KEYED_INIT is not object.__init__:
            _KEYED_INIT(
                self,
                rate,
                burst,
                name=name,
                max_keys=max_keys,
                idle_ttl=idle_ttl,
                clock=clock,
                storage=storage,
                on_storage_error=on_storage_error,
            )
        if name is not None:
            _registry.track(_registry.RATE_LIMITER, self, name)

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
    ) -> Callable[[F], F]: ...
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
        raise_on_limit = v.on_limit(on_limit)

        def limit(f: F) -> F:
            return cast(
                F,
                decorate(
                    f,
                    "riprap.KeyedRateLimiter",
                    native=lambda g: core.KeyedLimitedCall(
                        g, core.KeyedLimit(self, key, on_limit)
                    ),
                    coroutine=lambda g: _limit_async_keyed(
                        g, self, key, raise_on_limit
                    ),
                ),
            )

        return limit if func is None else limit(func)


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
