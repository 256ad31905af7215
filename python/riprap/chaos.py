"""Fault and latency injection: `riprap.chaos.inject(...)`, for testing failure handling.

A chaos policy makes a fraction of calls fail (and, optionally, slow) on purpose, so the retries,
breakers, fallbacks and dead letters around a function can be seen to work before a real outage
does it. Use it as a decorator or as a pipeline layer (usually the innermost: it stands in for
the dependency failing):

    flaky = riprap.chaos.inject(exception=ConnectionError, rate=0.2, seed=7)
    pipeline = riprap.Pipeline(riprap.RetryPolicy(base_delay=0.0), breaker, flaky)

    flaky.enabled = False  # switch it off (or on) at run time, from any thread

Decisions: each call draws once from the policy's own random stream (seeded: the same seed gives
the same faults in the same call order); a fault is raised *before* the call (the function does
not run); latency is waited before the call whether or not it then fails, on the policy's clock
(`clock=`, so a `ManualClock` makes it instant), and never past an enclosing `riprap.deadline`
or `riprap.timeout`: a latency longer than the time left waits that long and raises
`TimeoutExceededError`, as a dependency that answered too late would.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from . import _deadlines
from . import _validate as v
from ._clock import asleep_fn, check_clock
from ._decorate import decorate
from ._fork import track

__all__ = ["Chaos", "inject"]

F = TypeVar("F", bound=Callable[..., Any])

ExceptionSpec = type[BaseException] | BaseException | Callable[[], BaseException]


class Chaos:
    """A fault-injection policy; see `inject`.

    Attributes:
        enabled: Whether faults and latency are injected now (switchable at run time).
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_exception",
        "_latency",
        "_lock",
        "_random",
        "_seed",
        "_stats",
        "enabled",
        "rate",
    )

    def __init__(
        self,
        exception: ExceptionSpec,
        rate: float,
        latency: float | tuple[float, float] | None,
        seed: int | None,
        *,
        enabled: bool,
        clock: object,
    ) -> None:
        self._exception = _exception_factory(exception)
        rate = v.number("rate", rate)
        v.check_float("rate", rate, 0.0, True)
        if rate > 1.0:
            raise ValueError(f"rate must be <= 1.0, got {v.py_float(rate)}")
        self.rate = rate
        self._latency = _latency(latency)
        if seed is not None:
            v.integer("seed", seed)
        self._seed = seed
        self.enabled = v.boolean("enabled", enabled)
        self._clock = check_clock(clock)
        self._after_fork()
        track(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(self._seed)
        self._stats = {"calls": 0, "faults": 0, "delayed": 0}

    def get_stats(self) -> dict[str, int]:
        """`calls` (seen while enabled), `faults` (raised), `delayed` (latency injected)."""
        with self._lock:
            return dict(self._stats)

    def _draw(self) -> tuple[bool, float]:
        """(fail?, latency in seconds) for one call."""
        with self._lock:
            self._stats["calls"] += 1
            fail = self._random.random() < self.rate
            low, high = self._latency
            delay = low if low == high else self._random.uniform(low, high)
            if fail:
                self._stats["faults"] += 1
            if delay > 0.0:
                self._stats["delayed"] += 1
            return fail, delay

    def _wait_sync(self, delay: float) -> None:
        left = _deadlines.remaining()
        if left is not None and delay > left:
            _sleep(self._clock, left)
            raise _deadlines.exceeded()
        _sleep(self._clock, delay)

    async def _wait_async(self, delay: float) -> None:
        left = _deadlines.remaining()
        sleep = asleep_fn(self._clock)
        if left is not None and delay > left:
            await sleep(left)
            raise _deadlines.exceeded()
        await sleep(delay)

    def __call__(self, func: F) -> F:
        """Inject faults and latency into each call of `func` (sync or async)."""
        return cast(
            F,
            decorate(
                func,
                "riprap.chaos.inject",
                native=lambda f: _sync(f, self),
                coroutine=lambda f: _async(f, self),
            ),
        )

    def __repr__(self) -> str:
        return (
            f"<riprap.chaos.inject rate={self.rate} latency={self._latency} "
            f"enabled={self.enabled}>"
        )


def _sleep(clock: Any, seconds: float) -> None:
    if seconds <= 0.0:
        return
    if clock is None:
        time.sleep(seconds)
    else:
        clock.sleep(seconds)


def _sync(func: Callable[..., Any], chaos: Chaos) -> Callable[..., Any]:
    def injected(*args: Any, **kwargs: Any) -> Any:
        if chaos.enabled:
            fail, delay = chaos._draw()
            if delay > 0.0:
                chaos._wait_sync(delay)
            if fail:
                raise chaos._exception()
        return func(*args, **kwargs)

    return injected


def _async(func: Callable[..., Awaitable[Any]], chaos: Chaos) -> Callable[..., Any]:
    @functools.wraps(func)
    async def injected(*args: Any, **kwargs: Any) -> Any:
        if chaos.enabled:
            fail, delay = chaos._draw()
            if delay > 0.0:
                await chaos._wait_async(delay)
            if fail:
                raise chaos._exception()
        return await func(*args, **kwargs)

    return injected


def _exception_factory(spec: object) -> Callable[[], BaseException]:
    """A function that makes a fresh exception each time (a reused one grows its traceback)."""
    if isinstance(spec, type) and issubclass(spec, BaseException):
        return lambda: spec("injected by riprap.chaos")
    if isinstance(spec, BaseException):
        template = spec
        return lambda: type(template)(*template.args)
    if callable(spec):
        return cast(Callable[[], BaseException], spec)
    raise TypeError(
        "exception must be an exception class, an exception, or a callable returning one, "
        f"got {type(spec).__name__}"
    )


def _latency(value: object) -> tuple[float, float]:
    if value is None:
        return (0.0, 0.0)
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(
                f"latency must be seconds or a (low, high) pair, got {value!r}"
            )
        low = v.check_float("latency", v.number("latency", value[0]), 0.0, True)
        high = v.check_float("latency", v.number("latency", value[1]), 0.0, True)
        if low > high:
            raise ValueError(
                f"latency must be (low, high) with low <= high, got {value!r}"
            )
        return (low, high)
    seconds = v.check_float("latency", v.number("latency", value), 0.0, True)
    return (seconds, seconds)


def inject(
    exception: ExceptionSpec = ConnectionError,
    rate: float = 0.1,
    latency: float | tuple[float, float] | None = None,
    seed: int | None = None,
    *,
    enabled: bool = True,
    clock: object = None,
) -> Chaos:
    """A policy that makes a fraction of calls fail, and optionally slow, on purpose.

    Args:
        exception: What a faulty call raises: an exception class (raised with a message that
            says riprap injected it), an exception (a fresh copy each time), or a callable
            returning one.
        rate: The fraction of calls that fail, in [0, 1] (0: none, 1: every call).
        latency: Seconds waited before each call: a number, a `(low, high)` range drawn
            uniformly, or None.
        seed: Seed of the policy's random stream (the same seed gives the same faults).
        enabled: Whether it injects anything; the `enabled` attribute switches it at run time.
        clock: A `riprap.testing.ManualClock` to wait on (default: real time).

    Returns:
        A `Chaos` policy: a decorator and a `riprap.Pipeline` layer.
    """
    return Chaos(exception, rate, latency, seed, enabled=enabled, clock=clock)
