"""Fallback strategies by service name, and the `fallback` decorators.

`fallback_manager` holds one `FallbackStrategy` per service name. `riprap.fallback(...)` and
`FallbackDecorator(...)` wrap a function so that every call runs through a strategy: the
manager's strategy for a named service (shared by every function decorated with that name), or
a strategy of its own when no service is named.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar, cast

from . import _fork
from ._clock import check_clock
from ._decorate import decorate, is_async, name_of, refuse_generators
from ._fallback import (
    MISSING,
    FallbackConfig,
    FallbackStrategy,
    check_fallbacks,
    check_key,
)
from ._stats import FallbackStats

__all__ = [
    "FallbackDecorator",
    "ServiceFallbackManager",
    "fallback",
    "fallback_manager",
]

F = TypeVar("F", bound=Callable[..., Any])


class ServiceFallbackManager:
    """Fallback strategies by service name: one strategy per name, made on first use.

    Thread-safe. A forked child keeps the strategies (each starts fresh on its own: empty
    cache, zero counters).

    Args:
        default_config: The config of strategies created without one (default
            `FallbackConfig()`).

    Attributes:
        strategies: The strategies by service name (read it; create with `get_strategy`).
        default_config: The config of strategies created without one.
    """

    def __init__(self, default_config: FallbackConfig | None = None) -> None:
        if default_config is not None and not isinstance(
            default_config, FallbackConfig
        ):
            raise TypeError(
                "default_config must be a FallbackConfig, got "
                f"{type(default_config).__name__}"
            )
        self.strategies: dict[str, FallbackStrategy] = {}
        self.default_config = default_config or FallbackConfig()
        self._after_fork()
        _fork.track(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def get_strategy(
        self,
        service_name: str,
        config: FallbackConfig | None = None,
        *,
        clock: object = None,
    ) -> FallbackStrategy:
        """The strategy of `service_name`, created with `config` (or `default_config`) if new.

        Asking again returns the same strategy. A `config` that differs from the existing
        strategy's raises ValueError rather than being silently ignored; `config=None` accepts
        whatever it has. `clock` applies only when the strategy is created.
        """
        if not isinstance(service_name, str):
            raise TypeError(
                f"service_name must be a str, got {type(service_name).__name__}"
            )
        with self._lock:
            strategy = self.strategies.get(service_name)
            if strategy is None:
                strategy = FallbackStrategy(
                    config or self.default_config, clock=clock, name=service_name
                )
                self.strategies[service_name] = strategy
            elif config is not None and config != strategy.config:
                raise ValueError(
                    f"fallback strategy {service_name!r} already exists with a different "
                    f"config: {strategy.config!r}"
                )
            return strategy

    def get_all_stats(self) -> dict[str, FallbackStats]:
        """`get_stats()` of every strategy, by service name."""
        with self._lock:
            strategies = dict(self.strategies)
        return {name: s.get_stats() for name, s in strategies.items()}

    def clear_all_caches(self) -> None:
        """Forget every cached result of every strategy."""
        with self._lock:
            strategies = list(self.strategies.values())
        for s in strategies:
            s.clear_cache()


fallback_manager = ServiceFallbackManager()


class FallbackDecorator:
    """Wraps functions so each call runs through a `FallbackStrategy`.

    The wrapper keeps the function's colour (a sync function stays sync, an async one stays a
    coroutine function), `__wrapped__`, name, docstring and signature; it works on methods,
    static and class methods. Generator functions are refused with TypeError. The fallbacks
    are called with the same arguments as the function (for a method, `self` too), and so is
    `cache_key_func`. A sync function can only have sync fallbacks (checked here, when it is
    decorated); an async function may have both.

    The strategy is the manager's strategy for `service_name` (shared by every function
    decorated with that name), or, with `service_name=None`, a strategy of the function's own,
    made with `config` and `clock`. The wrapper's `fallback_strategy` attribute is the strategy.

    Args:
        service_name: The service whose strategy to use, or None for a private one.
        fallback_funcs: Functions to try in order when the function fails.
        cache_key_func: Called with the call's arguments; returns the key (any hashable, or
            None for "do not cache this call") the result is cached under.
        default_value: Returned when everything else failed (`MISSING`: no default; `None`
            is a real default).
        config: The config of a strategy created here.
        clock: A `riprap.testing.ManualClock` for a strategy created here.
        manager: Where named strategies live (default `fallback_manager`).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        service_name: str | None,
        fallback_funcs: Sequence[Callable[..., Any]] | None = None,
        cache_key_func: Callable[..., Hashable | None] | None = None,
        default_value: Any = MISSING,
        *,
        config: FallbackConfig | None = None,
        clock: object = None,
        manager: ServiceFallbackManager | None = None,
    ) -> None:
        self.fallback_funcs = check_fallbacks(
            () if fallback_funcs is None else fallback_funcs, "fallback_funcs"
        )
        for fb in self.fallback_funcs:
            refuse_generators(fb, "riprap.fallback (as a fallback)")
        if cache_key_func is not None and not callable(cache_key_func):
            raise TypeError(
                "cache_key must be a callable that takes the call's arguments and returns "
                f"the key, got {type(cache_key_func).__name__}"
            )
        self.cache_key_func = cache_key_func
        self.default_value = default_value
        self.service_name = service_name
        self._config = config
        self._clock = clock
        self.strategy: FallbackStrategy | None = None
        if service_name is not None:
            self.strategy = (manager or fallback_manager).get_strategy(
                service_name, config, clock=clock
            )
        elif config is not None and not isinstance(config, FallbackConfig):
            raise TypeError(
                f"config must be a FallbackConfig, got {type(config).__name__}"
            )
        else:
            check_clock(clock)

    def __call__(self, func: F) -> F:
        inner = getattr(func, "__func__", func)  # staticmethod / classmethod objects
        strategy = self.strategy or FallbackStrategy(
            self._config, clock=self._clock, name=name_of(inner)
        )
        wrapped = decorate(
            func,
            "riprap.fallback",
            native=lambda f: self._sync_wrapper(f, strategy),
            coroutine=lambda f: self._async_wrapper(f, strategy),
        )
        # Set last: `update_wrapper` copies the wrapped function's attributes over.
        getattr(wrapped, "__func__", wrapped).fallback_strategy = strategy
        return cast(F, wrapped)

    def _sync_wrapper(
        self, func: Callable[..., Any], strategy: FallbackStrategy
    ) -> Callable[..., Any]:
        for fb in self.fallback_funcs:
            if is_async(fb):
                raise TypeError(
                    f"riprap.fallback: the fallback {name_of(fb)} is async but "
                    f"{name_of(func)} is a sync function, whose calls cannot await it; "
                    "make the fallback sync or the function async"
                )
        run, fallbacks = strategy._run_sync, self.fallback_funcs
        key_func, default = self.cache_key_func, self.default_value

        def with_fallback(*args: Any, **kwargs: Any) -> Any:
            key = None if key_func is None else check_key(key_func(*args, **kwargs))
            return run(func, fallbacks, args, kwargs, key=key, default=default)

        return with_fallback

    def _async_wrapper(
        self, func: Callable[..., Any], strategy: FallbackStrategy
    ) -> Callable[..., Any]:
        run, fallbacks = strategy._run_async, self.fallback_funcs
        key_func, default = self.cache_key_func, self.default_value

        @functools.wraps(func)
        async def with_fallback(*args: Any, **kwargs: Any) -> Any:
            key = None if key_func is None else check_key(key_func(*args, **kwargs))
            return await run(func, fallbacks, args, kwargs, key=key, default=default)

        return with_fallback


def fallback(
    *fallbacks: Callable[..., Any],
    default: Any = MISSING,
    cache_key: Callable[..., Hashable | None] | None = None,
    service: str | None = None,
    config: FallbackConfig | None = None,
    clock: object = None,
) -> FallbackDecorator:
    """Give a function fallbacks: `@riprap.fallback(from_replica, default=[])`.

    Each call tries the function, then each fallback in order (same arguments, each bounded by
    the strategy's `degraded_timeout`), then a fresh cached result (with `cache_key`), then
    `default`; else it raises `FallbackExhaustedError` from the function's error.

    Examples:
        `@riprap.fallback(read_replica, default=None, cache_key=lambda user_id: user_id)`.

    Args:
        *fallbacks: Functions to try in order when the function fails.
        default: Returned when everything else failed (`MISSING`: no default; `None` is a
            real default).
        cache_key: Called with the call's arguments; returns the key the function's result
            is cached under (None: not cached).
        service: Use `fallback_manager`'s strategy of this name (shared with every function
            decorated with it); None gives the function a strategy of its own.
        config: A `FallbackConfig` for the strategy, if it is created here.
        clock: A `riprap.testing.ManualClock`, if the strategy is created here.

    Returns:
        A `FallbackDecorator`.
    """
    return FallbackDecorator(
        service, fallbacks, cache_key, default, config=config, clock=clock
    )
