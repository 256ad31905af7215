"""Circuit breaker: the state enum, the validated config and the breaker itself.

How a guarded call runs:

* `CircuitBreakerConfig` compiles once into a core `BreakerConfig` (validated by the core, so
  both backends raise the same messages); each `CircuitBreaker` owns a core `BreakerEngine`
  (the state machine, its clock, the exception classification and a transition hook).
* A decorated sync function is a native `BreakerCall`: while CLOSED, admission is one atomic
  load and the success is recorded under a short lock after the call returns. No lock is held
  while user code runs, so threads through one breaker run in parallel.
* Async functions, `with` / `async with` and `await breaker.call(...)` take a permit from the
  engine, run the call, and hand the permit back with the outcome. `with` keeps its permits in a
  context variable, so one breaker object can be entered by many threads and tasks at once, and
  re-entrantly.
* Control-flow exceptions (`CancelledError`, `KeyboardInterrupt`, `SystemExit`,
  `GeneratorExit`) are never counted; their permit is released (a half-open trial slot comes
  back at once).
* Transitions are reported after the engine's lock is released; listeners run in the order they
  were added, and a raising listener is logged on logger `riprap` and skipped.
"""

from __future__ import annotations

import contextvars
import dataclasses
import enum
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from . import _registry
from . import _validate as v
from ._backend import core
from ._clock import check_clock
from ._decorate import decorate, native_coroutine_function
from ._stats import CircuitBreakerStats

__all__ = [
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitState",
    "Listener",
    "live_breakers",
]

logger = logging.getLogger("riprap")
logger.addHandler(logging.NullHandler())  # a library never configures logging

F = TypeVar("F", bound=Callable[..., Any])


class CircuitState(enum.Enum):
    """A circuit breaker's state; `.value` is the string `get_stats()` reports."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


Listener = Callable[[str, CircuitState, CircuitState], object]


@dataclasses.dataclass(frozen=True)
class CircuitBreakerConfig:
    """When a breaker opens, how long it stays open, and how it closes again.

    The first five fields and their defaults are the seed design's; the rest follow
    resilience4j. Construction validates every field and raises `ValueError`/`TypeError` naming
    the bad one. The config is immutable and may be shared by any number of breakers.

    Attributes:
        failure_threshold: Consecutive failures that open the breaker (>= 1).
        timeout: Seconds the breaker stays open before it lets trial calls through (> 0).
        success_threshold: Trial successes that close a half-open breaker (>= 1).
        monitoring_window: Seconds of calls the failure and slow-call rates are computed over
            (> 0). The window is a ring of 60 time buckets, so its far edge moves in steps of
            `monitoring_window / 60`: a call is never counted once `monitoring_window` old.
        expected_exception: Exception type (or tuple of types) counted as failures. Others are
            ignored: neither success nor failure.
        failure_rate_threshold: The breaker opens when the failure rate of the window exceeds
            this (strictly), once the window holds `minimum_calls` calls. In [0, 1]; 1.0 turns
            the rate trigger off.
        minimum_calls: Calls the window must hold before either rate counts (>= 1). Applies
            only while CLOSED.
        half_open_max_calls: Trial calls admitted at once while half-open (>= 1); others are
            rejected with `retry_after=0`.
        slow_call_duration: A call lasting at least this many seconds is slow (None: no
            slow-call tracking). A slow failure counts as a failure and as slow.
        slow_call_rate_threshold: The breaker opens when the slow-call rate of the window
            reaches this (>=), once it holds `minimum_calls` calls. In (0, 1].
        excluded_exceptions: Exception types never counted, even if they match
            `expected_exception`.
    """

    failure_threshold: int = 5
    timeout: float = 60.0
    success_threshold: int = 3
    monitoring_window: float = 300.0
    # Compared through `_expected` (normalised to a tuple): `E` and `(E,)` are the same config.
    expected_exception: type[BaseException] | tuple[type[BaseException], ...] = (
        dataclasses.field(default=Exception, compare=False)
    )
    failure_rate_threshold: float = 0.5
    minimum_calls: int = 10
    half_open_max_calls: int = 3
    slow_call_duration: float | None = None
    slow_call_rate_threshold: float = 1.0
    excluded_exceptions: tuple[type[BaseException], ...] = ()
    _core: core.BreakerConfig = dataclasses.field(
        init=False, repr=False, compare=False, hash=False
    )
    _expected: tuple[type[BaseException], ...] = dataclasses.field(
        init=False, repr=False, compare=True, hash=True
    )

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)
        put(
            "_core",
            core.BreakerConfig(
                failure_threshold=self.failure_threshold,
                timeout=self.timeout,
                success_threshold=self.success_threshold,
                monitoring_window=self.monitoring_window,
                failure_rate_threshold=self.failure_rate_threshold,
                minimum_calls=self.minimum_calls,
                half_open_max_calls=self.half_open_max_calls,
                slow_call_duration=self.slow_call_duration,
                slow_call_rate_threshold=self.slow_call_rate_threshold,
            ),
        )
        put(
            "_expected",
            v.exception_types("expected_exception", self.expected_exception),
        )
        put(
            "excluded_exceptions",
            v.exception_types("excluded_exceptions", self.excluded_exceptions),
        )


def _shared_keywords(shared: object, quorum: object, time_source: object) -> None:
    """`shared=`, `quorum=` and `time_source=`: checked (they matter only with `storage=`)."""
    from ._redis.quorum import check_quorum  # noqa: PLC0415 - imports no redis
    from ._redis.shared import time_source as check_time_source  # noqa: PLC0415

    if not isinstance(shared, str):
        raise TypeError(f"shared must be a str, got {type(shared).__name__}")
    if shared not in ("state", "quorum"):
        raise ValueError(f"shared must be one of 'state', 'quorum', got {shared!r}")
    check_quorum(quorum)
    check_time_source(time_source)


class _Dispatch:
    """The engine's transition hook: logs and counts a transition, then calls the listeners."""

    __slots__ = ("label", "listeners", "name", "transitions")

    def __init__(self, name: str) -> None:
        self.name = name
        self.label = name
        self.listeners: list[Listener] = []
        #: Transitions so far, by (old state, new state), for the monitor and the metrics.
        self.transitions: dict[tuple[str, str], int] = {}

    def __call__(self, old: str, new: str) -> None:
        _registry.note_transition(self.label, old, new, self.transitions)
        before, after = CircuitState(old), CircuitState(new)
        level = logging.WARNING if after is CircuitState.OPEN else logging.INFO
        if logger.isEnabledFor(level):
            logger.log(level, "circuit breaker %r: %s -> %s", self.name, old, new)
        for listener in tuple(self.listeners):
            try:
                listener(self.name, before, after)
            except Exception:
                # danielfm/pybreaker#41: one bad listener must not break the breaker or
                # the call; the others still run.
                logger.exception(
                    "circuit breaker %r: listener %r raised on %s -> %s",
                    self.name,
                    listener,
                    old,
                    new,
                )


def live_breakers() -> list[CircuitBreaker]:
    """Every breaker still alive, registry-made or not, oldest first (for monitors and metrics)."""
    return [b for _, b in _registry.live(_registry.BREAKER)]


class CircuitBreaker:
    """A circuit breaker: decorator, (async) context manager, and `await call(...)`.

    The state machine: CLOSED counts outcomes and opens when consecutive failures
    reach `failure_threshold`, or the window's failure rate exceeds `failure_rate_threshold`, or
    its slow-call rate reaches `slow_call_rate_threshold` (the rates only once the window holds
    `minimum_calls` calls). OPEN rejects every call with `CircuitOpenError` until `timeout` has
    passed; the first call or state/stats read after that finds HALF_OPEN. HALF_OPEN lets at
    most `half_open_max_calls` trial calls run at once; `success_threshold` successes close it
    (clearing the window) and any failure opens it again. A trial call that never reports (its
    thread is stuck) is presumed lost once every slot is taken and no trial call was admitted for
    `timeout` seconds: the next caller gets a fresh slot, so the breaker cannot stay stuck in
    HALF_OPEN.

    Every call of one breaker shares its state, from any thread or event loop. Use one breaker
    per dependency.

    Args:
        name: The breaker's name (in errors, logs, stats and listener calls).
        config: A `CircuitBreakerConfig` (default: `CircuitBreakerConfig()`).
        clock: A `riprap.testing.ManualClock` (default: the monotonic clock).
        storage: Keep the breaker in Redis, shared by every process and host that uses the
            same `name`: a `redis://` URL, a redis-py client or a `riprap.RedisStorage`. See
            the README's "Shared state on Redis".
        on_storage_error: What a call does when Redis fails: "local" (default: this
            process's own breaker decides), "fail_open" (admit) or "fail_closed" (reject with
            `CircuitOpenError`, the storage error as its `__cause__`).
        shared: With `storage`: "state" (default: one breaker state for every process) or
            "quorum" (each process keeps its own breaker and votes; the circuit opens for all
            only when at least `quorum` of the live processes vote open).
        quorum: The fraction of live processes, in (0, 1], whose open votes open the circuit
            for all (default 0.5; "quorum" mode only).
        time_source: With `storage`: "server" (default: Redis's clock) or "client" (this
            process's clock, for servers that refuse TIME in scripts).
    """

    def __new__(cls, *_args: Any, storage: object = None, **_kwargs: Any) -> Self:
        if storage is not None and cls is CircuitBreaker:
            from ._redis.breaker import SharedCircuitBreaker  # noqa: PLC0415 - optional

            return cast(Self, object.__new__(SharedCircuitBreaker))
        return object.__new__(cls)

    def __init__(
        self,
        name: str,
        config: CircuitBreakerConfig | None = None,
        *,
        clock: object = None,
        storage: object = None,
        on_storage_error: str = "local",
        shared: str = "state",
        quorum: float = 0.5,
        time_source: str = "server",
    ) -> None:
        v.required_name(name)
        if config is None:
            config = CircuitBreakerConfig()
        elif not isinstance(config, CircuitBreakerConfig):
            raise TypeError(
                f"config must be a CircuitBreakerConfig, got {type(config).__name__}"
            )
        v.storage_error_mode(on_storage_error)
        _shared_keywords(shared, quorum, time_source)
        if storage is not None and not hasattr(self, "_shared"):
            raise TypeError(
                f"storage= is supported on riprap.CircuitBreaker, not on "
                f"{type(self).__name__}"
            )
        self._name = name
        self._config = config
        self._clock = check_clock(clock)
        self._dispatch = _Dispatch(name)
        self._engine = core.BreakerEngine(
            name,
            config._core,
            expected_exception=config._expected,
            excluded_exceptions=config.excluded_exceptions,
            clock=self._clock,
            on_transition=self._dispatch,
        )
        # Permits of `with` blocks, per thread and task (a tuple: a stack for re-entry).
        self._permits: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
            f"riprap.breaker.{name}", default=()
        )
        self._dispatch.label = _registry.track(_registry.BREAKER, self, name)

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self._name

    @property
    def config(self) -> CircuitBreakerConfig:
        """The configuration."""
        return self._config

    @property
    def state(self) -> CircuitState:
        """The current state (an OPEN breaker whose timeout has passed reads HALF_OPEN)."""
        return CircuitState(self._engine.state)

    def get_stats(self) -> CircuitBreakerStats:
        """A snapshot of the breaker. Times are seconds on the breaker's clock.

        Keys (the documented core set first, then extras):

        * `name`: the breaker's name; `state`: the state's value string.
        * `failure_count`, `success_count`: failed and successful calls in the window (the last
          `monitoring_window` seconds, since the breaker last closed or was reset).
        * `failure_rate`: `failure_count / (failure_count + success_count)`, 0.0 when the
          window is empty. While OPEN it reports the window as it stood when it opened (minus
          calls that aged out).
        * `last_failure_time`: when the most recent failure was recorded (None if never);
          `time_since_last_failure`: seconds since then (None if never).
        * `total_calls`: every call the breaker decided since it was created: successes,
          failures, ignored, cancelled (finished) and rejected. Calls still running are not
          included yet.
        * `consecutive_failures`: failures since the last success (or since it closed).
        * `window_calls`, `slow_call_count`, `slow_call_rate`: calls in the window, how many
          of them were slow, and their ratio.
        * `half_open_calls`, `half_open_successes`: trial calls in flight and trial
          successes so far (0 unless HALF_OPEN).
        * `opened_at`: when the breaker last opened (None unless OPEN); `open_duration`:
          seconds since the breaker left CLOSED (0.0 while CLOSED), across re-opens;
          `retry_after`: seconds until a trial call may go (0.0 unless OPEN).
        * `total_successes`, `total_failures`, `total_ignored`, `total_cancelled`,
          `total_rejected`, `total_lost_trials`: lifetime counters, never reset.

        Reading the stats can perform a due OPEN -> HALF_OPEN transition (listeners fire).
        """
        return self._engine.stats()

    def reset(self) -> None:
        """Close the breaker with an empty window.

        Lifetime counters are kept; calls already running when it is reset no longer count
        towards the new window.
        """
        self._engine.reset()

    def force_open(self) -> None:
        """Open the breaker now, as if it had tripped.

        It rejects for `timeout` seconds, then half-opens as usual. Calling it while open
        restarts the timeout.
        """
        self._engine.force_open()

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(name, old_state, new_state)` on every transition.

        Listeners run after the breaker's lock is released, in the order they were added. A
        listener that raises is logged on logger `riprap` and skipped; the call and the other
        listeners go on.
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {type(listener).__name__}")
        self._dispatch.listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Removes a listener added with `add_listener` (ValueError if it is not there)."""
        self._dispatch.listeners.remove(listener)

    # -- decorator ---------------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        """Guard a sync or async function, method or callable with this breaker.

        The wrapper keeps `__wrapped__`, `__name__`, the signature and
        `inspect.iscoroutinefunction`; on a sync function it is a native object that binds as
        a method. Generator functions are refused with TypeError. The wrapper's
        `circuit_breaker` attribute is this breaker.
        """

        def tag(wrapper: Any) -> Any:
            wrapper.circuit_breaker = self
            return wrapper

        return cast(
            F,
            decorate(
                func,
                "a circuit breaker",
                native=lambda f: tag(core.BreakerCall(f, self._engine)),
                coroutine=lambda f: tag(_async_call(f, self._engine)),
            ),
        )

    async def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run `func(*args, **kwargs)` through the breaker; `func` may be sync or async.

        Raises:
            CircuitOpenError: the breaker rejected the call (a fresh instance every time).
        """
        engine = self._engine
        permit = engine.acquire()
        try:
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            engine.record(permit, exc)
            raise
        except BaseException:
            engine.release(permit)
            raise
        engine.record(permit)
        return result

    # -- context managers --------------------------------------------------------------------

    def _enter(self) -> None:
        permit = self._engine.acquire()
        self._permits.set((*self._permits.get(), permit))

    def _exit(self, exc: BaseException | None) -> None:
        stack = self._permits.get()
        if not stack:
            raise RuntimeError(
                f"circuit breaker {self._name!r}: exit without a matching enter"
            )
        permit = stack[-1]
        self._permits.set(stack[:-1])
        if exc is None or isinstance(exc, Exception):
            self._engine.record(permit, exc)
        else:
            self._engine.release(permit)

    def __enter__(self) -> CircuitBreaker:
        self._enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc)

    async def __aenter__(self) -> CircuitBreaker:
        self._enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(exc)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._name!r} {self._engine.state}>"


def _async_call(
    func: Callable[..., Awaitable[Any]], engine: core.BreakerEngine
) -> Callable[..., Any]:
    """The async decorator: a native coroutine function, or the Python wrapper below.

    Each call of the native one is a riprap `Coroutine` that takes its permit when first
    resumed and records the outcome when the user's coroutine ends. An async callable that
    `inspect` cannot see as a coroutine function gets the Python wrapper (same decisions).
    """
    wrapper = core.BreakerAsyncCall(func, engine)
    if native_coroutine_function(wrapper, func):
        return wrapper
    return _async_wrapper(func, engine)


def _async_wrapper(
    func: Callable[..., Awaitable[Any]], engine: core.BreakerEngine
) -> Callable[..., Any]:
    acquire, record, release = engine.acquire, engine.record, engine.release

    @functools.wraps(func)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        permit = acquire()
        try:
            result = await func(*args, **kwargs)
        except Exception as exc:
            # fabfuel/circuitbreaker#4: failures raised on await are counted.
            record(permit, exc)
            raise
        except BaseException:
            release(permit)
            raise
        record(permit)
        return result

    return guarded
