"""Fallback chains: when the primary call fails, degrade step by step instead of failing.

`FallbackStrategy` runs one call through a fixed order of levels:

1. the primary function; its result is cached under `cache_key` (only the primary's result is
   ever cached: a fallback's answer is degraded and must not be served later as if it were
   fresh);
2. each fallback function in order, called with the same arguments, each bounded by
   `degraded_timeout`;
3. a fresh cached value (stored by an earlier successful primary call within `cache_ttl`);
4. the default value, if one was given (`None` is a real default; `MISSING` means none);
5. else `FallbackExhaustedError`, raised from the primary error, whose `errors` lists every
   failure in the order it happened, the primary's first.

Control-flow exceptions (`CancelledError`, `KeyboardInterrupt`, `SystemExit`, `GeneratorExit`)
are never caught: from the primary or from a fallback they pass through untouched and no later
level runs.

What `degraded_timeout` means (Python cannot interrupt code that blocks):

* An async fallback runs as a task and is cancelled at the deadline; its cleanup (`finally`
  blocks) has run before the next level starts.
* A sync fallback runs in a new daemon worker thread (with a copy of the caller's context
  variables) and the caller waits for it until the deadline. If it is still running then, the
  caller moves on to the next level and the thread is *abandoned*: it keeps running until the
  function returns, and its result is thrown away. `get_stats()` counts abandoned threads
  (`abandoned`, and `abandoned_running` for those not finished yet). A fallback that needs its
  caller's thread (thread-local state, a sqlite3 connection made on that thread) should be
  async, or run with `degraded_timeout=None`: then fallbacks are called directly on the
  caller's thread with no bound.
* The deadline is judged on the strategy's clock: with a `ManualClock`, a fallback that
  advances the clock past its deadline (say with `clock.sleep`) has timed out even though it
  returned, and its result is thrown away the same way.

The primary call is not bounded (compose with a timeout policy for that), and in
`execute_with_fallback` a sync primary runs on the calling thread (the event loop's).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import enum
import functools
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final

from . import _fork, _registry
from . import _validate as v
from ._bounded import Bound, run_bounded, run_in_thread
from ._cache import ResultCache
from ._clock import check_clock
from ._decorate import check_callable, is_async, name_of
from ._errors import FallbackExhaustedError, TimeoutExceededError
from ._stats import FallbackStats

__all__ = [
    "MISSING",
    "FallbackConfig",
    "FallbackStrategy",
    "check_fallbacks",
    "check_key",
    "live_strategies",
]

logger = logging.getLogger("riprap")
logger.addHandler(logging.NullHandler())


class _Missing(enum.Enum):
    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "riprap.MISSING"

    __str__ = __repr__


MISSING: Final = _Missing.MISSING
"""The "no value given" sentinel: `default_value=MISSING` means "no default", so that `None`
can be a real default value."""


@dataclasses.dataclass(frozen=True)
class FallbackConfig:
    """Which fallback levels a strategy uses, and its cache and timeout settings.

    The first five fields and their defaults are the seed design's. Construction validates
    every field and raises `ValueError`/`TypeError` naming the bad one.

    Attributes:
        enable_cache_fallback: Cache the primary's results under `cache_key` and serve a fresh
            one when the primary and every fallback fail.
        enable_default_value_fallback: Return the default value (when one is given) as the last
            level.
        enable_degraded_service_fallback: Call the fallback functions.
        cache_ttl: Seconds a cached result stays fresh (> 0).
        degraded_timeout: Seconds each fallback may take (> 0), or None for no bound (then
            fallbacks run directly on the caller's thread). See the module docs for what the
            bound means for sync and async fallbacks.
        cache_max_entries: The most results cached at once (>= 1); the least recently used
            entry is evicted first.
    """

    enable_cache_fallback: bool = True
    enable_default_value_fallback: bool = True
    enable_degraded_service_fallback: bool = True
    cache_ttl: float = 300
    degraded_timeout: float | None = 5.0
    cache_max_entries: int = 10_000

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)
        for name in (
            "enable_cache_fallback",
            "enable_default_value_fallback",
            "enable_degraded_service_fallback",
        ):
            v.boolean(name, getattr(self, name))
        put(
            "cache_ttl",
            v.check_float(
                "cache_ttl", v.number("cache_ttl", self.cache_ttl), 0.0, False
            ),
        )
        if self.degraded_timeout is not None:
            timeout = v.number("degraded_timeout", self.degraded_timeout)
            put(
                "degraded_timeout",
                v.check_float("degraded_timeout", timeout, 0.0, False),
            )
        v.check_int(
            "cache_max_entries",
            v.integer("cache_max_entries", self.cache_max_entries),
            1,
        )


def check_fallbacks(fallbacks: Any, what: str) -> tuple[Callable[..., Any], ...]:
    """`fallbacks` as a tuple of callables, else TypeError."""
    if callable(fallbacks) or isinstance(fallbacks, (str, bytes)):
        raise TypeError(
            f"{what} must be a sequence of callables, got a single "
            f"{type(fallbacks).__name__}"
        )
    try:
        out: tuple[Any, ...] = tuple(fallbacks)
    except TypeError:
        raise TypeError(
            f"{what} must be a sequence of callables, got {type(fallbacks).__name__}"
        ) from None
    for fb in out:
        check_callable(fb, what)
    return out


def _awaitable_error(func: Callable[..., Any], result: object) -> TypeError:
    close = getattr(result, "close", None)
    if inspect.iscoroutine(result) and close is not None:
        close()  # never started: closing it avoids "coroutine was never awaited"
    return TypeError(
        f"fallback {name_of(func)} returned an awaitable ({type(result).__name__}) in a sync "
        "call, which cannot await it. Give a sync function sync fallbacks, or decorate an "
        "async function (or use `await strategy.execute_with_fallback(...)`) to use async "
        "fallbacks."
    )


_COUNTERS = (
    "calls",
    "primary_successes",
    "primary_failures",
    "fallback_successes",
    "fallback_failures",
    "timeouts",
    "cache_fallbacks",
    "default_fallbacks",
    "exhausted",
    "abandoned",
    "abandoned_running",
)

_LIVE: weakref.WeakSet[FallbackStrategy] = weakref.WeakSet()


def live_strategies() -> list[FallbackStrategy]:
    """Every fallback strategy still alive (for monitors and metrics)."""
    return list(_LIVE)


class FallbackStrategy:
    """Runs calls through primary → fallbacks → cached value → default → error.

    See the module documentation for the order and for what `degraded_timeout` means for sync
    and async fallbacks. One strategy may serve any number of calls, from any thread or event
    loop; its cache and counters are shared by all of them.

    Args:
        config: A `FallbackConfig` (default `FallbackConfig()`).
        clock: A `riprap.testing.ManualClock` for the cache's TTL and the fallback deadlines
            (default: real monotonic time).
        name: A name for log lines and stats (default "fallback").

    Attributes:
        cache: The `ResultCache` holding the primary's results.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        config: FallbackConfig | None = None,
        *,
        clock: object = None,
        name: str | None = None,
    ) -> None:
        if config is None:
            config = FallbackConfig()
        elif not isinstance(config, FallbackConfig):
            raise TypeError(
                f"config must be a FallbackConfig, got {type(config).__name__}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        self.config = config
        self.name = name if name is not None else "fallback"
        self.clock = check_clock(clock)
        self._now: Callable[[], float] = (
            time.monotonic if self.clock is None else self.clock.now
        )
        self.cache = ResultCache(
            config.cache_ttl, config.cache_max_entries, clock=self.clock, name=self.name
        )
        self._after_fork()
        _fork.track(self)
        _LIVE.add(self)
        _registry.track(_registry.FALLBACK, self, self.name)

    def _after_fork(self) -> None:
        """Fresh counters and lock (a forked child starts with none; the cache renews itself)."""
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_COUNTERS, 0)

    def _count(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._counts[name] += by

    # --- the public entry points ---------------------------------------------------------

    async def execute_with_fallback(
        self,
        primary_func: Callable[..., Any],
        fallback_funcs: Sequence[Callable[..., Any]] = (),
        /,
        *args: Any,
        cache_key: Hashable | None = None,
        default_value: Any = MISSING,
        **kwargs: Any,
    ) -> Any:
        """Call `primary_func(*args, **kwargs)`, degrading through the levels if it fails.

        Sync and async functions both work (a sync primary runs on the calling thread, sync
        fallbacks as described in the module docs).

        Args:
            primary_func: The preferred implementation.
            fallback_funcs: Functions to try in order, called with the same arguments.
            *args: Positional arguments for every function.
            cache_key: Where the primary's result is cached (None: no caching); any hashable.
            default_value: Returned when everything else failed (`MISSING`: no default).
            **kwargs: Keyword arguments for every function.

        Returns:
            The first result a level produced.

        Raises:
            FallbackExhaustedError: Every level failed (`__cause__` is the primary error).
        """
        fallbacks = check_fallbacks(fallback_funcs, "fallback_funcs")
        check_key(cache_key)
        return await self._run_async(
            primary_func, fallbacks, args, kwargs, key=cache_key, default=default_value
        )

    def execute_with_fallback_sync(
        self,
        primary_func: Callable[..., Any],
        fallback_funcs: Sequence[Callable[..., Any]] = (),
        /,
        *args: Any,
        cache_key: Hashable | None = None,
        default_value: Any = MISSING,
        **kwargs: Any,
    ) -> Any:
        """The same as `execute_with_fallback`, for sync code: every function must be sync.

        Raises:
            FallbackExhaustedError: Every level failed (`__cause__` is the primary error).
            TypeError: The primary is async, or a fallback is async or returns an awaitable.
        """
        if is_async(primary_func):
            raise TypeError(
                f"{name_of(primary_func)} is async: use "
                "`await strategy.execute_with_fallback(...)`"
            )
        fallbacks = check_fallbacks(fallback_funcs, "fallback_funcs")
        check_key(cache_key)
        return self._run_sync(
            primary_func, fallbacks, args, kwargs, key=cache_key, default=default_value
        )

    def clear_cache(self, key: Hashable | None = None) -> None:
        """Forget the cached result under `key`, or every cached result (None)."""
        if key is None:
            self.cache.clear()
        else:
            self.cache.discard(key)

    def get_stats(self) -> FallbackStats:
        """Counters since construction, the name, and the cache's `get_stats()`.

        `calls`; `primary_successes`, `primary_failures`; `fallback_successes`,
        `fallback_failures` (each failed fallback call), `timeouts` (fallbacks past
        `degraded_timeout`); `cache_fallbacks`, `default_fallbacks` (calls answered by the
        cache or the default), `exhausted` (calls that raised `FallbackExhaustedError`);
        `abandoned` (sync fallback threads left running at their deadline) and
        `abandoned_running` (those still running now).
        """
        with self._lock:
            counts = dict(self._counts)
        return FallbackStats(
            name=self.name,
            calls=counts["calls"],
            primary_successes=counts["primary_successes"],
            primary_failures=counts["primary_failures"],
            fallback_successes=counts["fallback_successes"],
            fallback_failures=counts["fallback_failures"],
            timeouts=counts["timeouts"],
            cache_fallbacks=counts["cache_fallbacks"],
            default_fallbacks=counts["default_fallbacks"],
            exhausted=counts["exhausted"],
            abandoned=counts["abandoned"],
            abandoned_running=counts["abandoned_running"],
            cache=self.cache.get_stats(),
        )

    def __repr__(self) -> str:
        return f"FallbackStrategy(name={self.name!r}, config={self.config!r})"

    # --- sync -----------------------------------------------------------------------------

    def _run_sync(
        self,
        primary: Callable[..., Any],
        fallbacks: tuple[Callable[..., Any], ...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        key: Hashable | None,
        default: Any,
    ) -> Any:
        try:
            result = primary(*args, **kwargs)
        except Exception as error:
            # Called while the primary error is being handled, so an error raised by a
            # fallback carries it as `__context__`.
            return self._degrade_sync(
                error, fallbacks, args, kwargs, key=key, default=default
            )
        self._succeeded(key, result)
        return result

    def _degrade_sync(
        self,
        primary_error: Exception,
        fallbacks: tuple[Callable[..., Any], ...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        key: Hashable | None,
        default: Any,
    ) -> Any:
        errors: list[BaseException] = [primary_error]
        self._primary_failed(primary_error)
        if self.config.enable_degraded_service_fallback:
            for index, fb in enumerate(fallbacks, 1):
                if is_async(fb):
                    raise TypeError(
                        f"fallback {name_of(fb)} is async, but this is a sync call, which "
                        "cannot await it. Give a sync function sync fallbacks, or make the "
                        "function async."
                    )
                try:
                    result = self._call_sync(fb, args, kwargs)
                except Exception as error:
                    self._level_failed(index, fb, error, primary_error, errors)
                    continue
                if inspect.isawaitable(result):
                    raise _awaitable_error(fb, result)
                return self._fallback_succeeded(index, fb, result)
        return self._last_resort(primary_error, errors, key, default)

    def _call_sync(
        self, fb: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        timeout = self.config.degraded_timeout
        if timeout is None:
            return fb(*args, **kwargs)
        in_time, value = run_in_thread(self._bound(timeout), fb, args, kwargs)
        if not in_time:
            raise self._timeout(fb, timeout, abandoned=value)
        return value

    # --- async ----------------------------------------------------------------------------

    async def _run_async(
        self,
        primary: Callable[..., Any],
        fallbacks: tuple[Callable[..., Any], ...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        key: Hashable | None,
        default: Any,
    ) -> Any:
        try:
            result = primary(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as error:
            return await self._degrade_async(
                error, fallbacks, args, kwargs, key=key, default=default
            )
        self._succeeded(key, result)
        return result

    async def _degrade_async(
        self,
        primary_error: Exception,
        fallbacks: tuple[Callable[..., Any], ...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        key: Hashable | None,
        default: Any,
    ) -> Any:
        errors: list[BaseException] = [primary_error]
        self._primary_failed(primary_error)
        if self.config.enable_degraded_service_fallback:
            for index, fb in enumerate(fallbacks, 1):
                try:
                    result = await self._call_async(fb, args, kwargs)
                except Exception as error:
                    self._level_failed(index, fb, error, primary_error, errors)
                    continue
                return self._fallback_succeeded(index, fb, result)
        return self._last_resort(primary_error, errors, key, default)

    async def _call_async(
        self, fb: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        timeout = self.config.degraded_timeout
        if timeout is None:
            result = fb(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result
        in_time, value = await run_bounded(self._bound(timeout), fb, args, kwargs)
        if not in_time:
            raise self._timeout(fb, timeout, abandoned=value)
        return value

    def _bound(self, timeout: float) -> Bound:
        return Bound(timeout, self._now, self.clock is not None, self._abandoned)

    # --- bookkeeping shared by both ---------------------------------------------------------

    def _succeeded(self, key: Hashable | None, result: Any) -> None:
        if key is not None and self.config.enable_cache_fallback:
            self.cache.put(key, result)
        with self._lock:
            counts = self._counts
            counts["calls"] += 1
            counts["primary_successes"] += 1

    def _primary_failed(self, error: Exception) -> None:
        with self._lock:
            counts = self._counts
            counts["calls"] += 1
            counts["primary_failures"] += 1
        if logger.isEnabledFor(logging.WARNING):
            logger.warning(
                "%s: primary call failed (%s: %s); falling back",
                self.name,
                type(error).__name__,
                _describe(error),
            )

    def _level_failed(
        self,
        index: int,
        fb: Callable[..., Any],
        error: Exception,
        primary_error: Exception,
        errors: list[BaseException],
    ) -> None:
        if error.__context__ is None and error is not primary_error:
            error.__context__ = primary_error  # raised in a task or a thread
        errors.append(error)
        self._count("fallback_failures")
        if logger.isEnabledFor(logging.WARNING):
            logger.warning(
                "%s: fallback %d (%s) failed (%s: %s)",
                self.name,
                index,
                name_of(fb),
                type(error).__name__,
                _describe(error),
            )

    def _fallback_succeeded(
        self, index: int, fb: Callable[..., Any], result: Any
    ) -> Any:
        self._count("fallback_successes")
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s: answered by fallback %d (%s)", self.name, index, name_of(fb)
            )
        return result

    def _last_resort(
        self,
        primary_error: Exception,
        errors: list[BaseException],
        key: Hashable | None,
        default: Any,
    ) -> Any:
        if key is not None and self.config.enable_cache_fallback:
            cached = self.cache.get(key, MISSING)
            if cached is not MISSING:
                self._count("cache_fallbacks")
                logger.info("%s: answered from the cache (key %r)", self.name, key)
                return cached
        if default is not MISSING and self.config.enable_default_value_fallback:
            self._count("default_fallbacks")
            logger.info("%s: answered with the default value", self.name)
            return default
        self._count("exhausted")
        logger.error(
            "%s: the primary call and %d fallback(s) failed; no cached value or default",
            self.name,
            len(errors) - 1,
        )
        raise FallbackExhaustedError(
            errors,
            f"{self.name}: the primary call and {len(errors) - 1} fallback(s) failed, and "
            "there was no fresh cached value and no default",
        ) from primary_error

    def _timeout(
        self, fb: Callable[..., Any], timeout: float, *, abandoned: bool
    ) -> TimeoutExceededError:
        self._count("timeouts")
        what = (
            "was still running at the deadline; its thread is abandoned and runs on"
            if abandoned
            else "did not finish in time; its result is not used"
        )
        return TimeoutExceededError(
            timeout, f"fallback {name_of(fb)} {what} (degraded_timeout={timeout}s)"
        )

    def _abandoned(self, thread: cf.Future[Any]) -> None:
        with self._lock:
            self._counts["abandoned"] += 1
            self._counts["abandoned_running"] += 1
        thread.add_done_callback(self._abandoned_done)

    def _abandoned_done(self, _fut: object) -> None:
        self._count("abandoned_running", -1)


def check_key(key: Hashable | None) -> Hashable | None:
    """`key` if it is None or hashable, else TypeError."""
    if key is not None:
        try:
            hash(key)
        except TypeError:
            raise TypeError(
                f"cache_key must be hashable, got {type(key).__name__}"
            ) from None
    return key


def _describe(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # a broken __str__ must not break the fallback chain
        return f"<{type(error).__name__} with an unprintable message>"
