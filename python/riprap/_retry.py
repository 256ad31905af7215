"""Retry with backoff and jitter: policies, the decorator and code-block retries.

How a retried call runs:

* A policy compiles once into a core `RetrySchedule` (backoff, jitter stream, attempts, deadline);
  each decorated function gets a core `RetryEngine` (the schedule plus classification, budget,
  clock, `on_retry` and its log name).
* A sync function is wrapped in `RetryCall`, a native object: the success path adds no Python
  frame, and on failure the engine runs the whole loop natively (classify, Retry-After, deadline,
  budget, log, hook, sleep on the clock, call again).
* Async functions, `policy.attempts()` blocks and `RetryManager` run their loop in Python and ask
  `engine.decide(...)` once per failure, so every form of retry makes the same decisions.
* Control-flow exceptions (`CancelledError`, `KeyboardInterrupt`, `SystemExit`, `GeneratorExit`)
  are not `Exception`s: they are never caught, counted or retried. A zero delay never sleeps.
* When retries run out the caller gets its own last exception, unwrapped.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar, cast, overload

from . import _registry
from . import _validate as v
from ._backend import core
from ._clock import asleep_fn, check_clock
from ._decorate import decorate, name_of, native_coroutine_function

__all__ = [
    "API_RETRY_POLICY",
    "DATABASE_RETRY_POLICY",
    "DEFAULT_MESSAGE_PATTERNS",
    "NETWORK_RETRY_POLICY",
    "Attempt",
    "RetryAttempts",
    "RetryDecorator",
    "RetryPolicy",
    "retry",
]

logger = logging.getLogger("riprap")
logger.addHandler(logging.NullHandler())  # a library never configures logging

F = TypeVar("F", bound=Callable[..., Any])

#: The seed's retryable message fragments (matched case-insensitively in `str(exc)`).
DEFAULT_MESSAGE_PATTERNS: tuple[str, ...] = (
    "connection refused",
    "connection timeout",
    "connection reset",
    "temporary failure",
    "service unavailable",
    "rate limit",
)

OnRetry = Callable[[int, "BaseException | None", float], object]


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How to retry: which failures, how often, and how long to wait between attempts.

    The fields and defaults are the seed design's, plus `retry_on_result`, `deadline`,
    `respect_retry_after`, `budget` and `seed`. Construction validates every field and raises
    `ValueError`/`TypeError` naming the bad one; the policy is immutable and can be shared by any
    number of functions, threads and event loops.

    Attributes:
        max_attempts: Total attempts, >= 1.
        base_delay: The first delay in seconds.
        max_delay: Cap on the computed delay; jitter is applied after the cap so clients at the
            cap do not retry in lock-step.
        exponential_base: Growth factor for "exponential" and "full_jitter" (>= 1).
        jitter: Apply proportional jitter (exponential, linear and fixed strategies).
        jitter_range: Proportional jitter: the delay moves uniformly within ±range x delay.
        backoff_strategy: "exponential", "linear", "fixed", "decorrelated" (AWS) or
            "full_jitter" (AWS). The last two carry their own randomness whatever `jitter` says.
        retryable_exceptions: Exception classes that are retried. Control-flow exceptions
            (`CancelledError`, `KeyboardInterrupt`, ...) are never retried, even if listed.
            riprap's own rejections (`RateLimitExceeded`, `BulkheadRejectedError`,
            `CircuitOpenError`) are retried only when a riprap class that matches them is
            listed (the class itself, or `ResilienceError`): not by status code, message or
            `Exception`.
        retryable_status_codes: An exception whose `status_code` (or `status`) attribute is one
            of these is retried.
        retryable_message_patterns: An exception whose message contains one of these
            (case-insensitive) is retried.
        retry_on_result: Predicate on a successful return value; True means retry. When
            attempts run out the last result is returned.
        deadline: Total seconds for all attempts, from the start of the first. A sleep that
            would end past it is not started: the last exception is raised at once.
        respect_retry_after: An exception's `retry_after` (seconds) or its (or its
            `response`'s) `headers["Retry-After"]` (seconds or an HTTP date) sets the next delay
            exactly, clamped to `max_delay` and the deadline.
        budget: A shared `RetryBudget`; retries it refuses are not made.
        seed: RNG seed for reproducible jitter (taken modulo 2**64). Without one each policy
            draws from its own entropy-seeded stream, reseeded in forked children.
    """

    max_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 60.0
    exponential_base: float = 2.0
    jitter: bool = True
    jitter_range: float = 0.1
    backoff_strategy: str = "exponential"
    retryable_exceptions: tuple[type[BaseException], ...] = (
        ConnectionError,
        TimeoutError,
        OSError,
    )
    retryable_status_codes: tuple[int, ...] = (502, 503, 504, 429)
    retryable_message_patterns: tuple[str, ...] = DEFAULT_MESSAGE_PATTERNS
    retry_on_result: Callable[[Any], bool] | None = None
    deadline: float | None = None
    respect_retry_after: bool = True
    budget: core.RetryBudget | None = None
    seed: int | None = None
    _schedule: core.RetrySchedule = dataclasses.field(
        init=False, repr=False, compare=False, hash=False
    )
    _patterns: tuple[str, ...] = dataclasses.field(
        init=False, repr=False, compare=False, hash=False
    )
    _engine: core.RetryEngine = dataclasses.field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)
        put("max_attempts", v.integer("max_attempts", self.max_attempts))
        v.check_int("max_attempts", self.max_attempts, 1)
        for name in ("base_delay", "max_delay", "exponential_base", "jitter_range"):
            put(name, v.number(name, getattr(self, name)))
        put("jitter", v.boolean("jitter", self.jitter))
        if not isinstance(self.backoff_strategy, str):
            raise TypeError(
                f"backoff_strategy must be a str, got {type(self.backoff_strategy).__name__}"
            )
        put(
            "retryable_exceptions",
            v.exception_types("retryable_exceptions", self.retryable_exceptions),
        )
        codes = tuple(
            v.integer("retryable_status_codes", c)
            for c in v._iterable("retryable_status_codes", self.retryable_status_codes)
        )
        put("retryable_status_codes", codes)
        put(
            "retryable_message_patterns",
            v.strings("retryable_message_patterns", self.retryable_message_patterns),
        )
        put("_patterns", tuple(p.lower() for p in self.retryable_message_patterns))
        v.callable_or_none("retry_on_result", self.retry_on_result)
        put("deadline", v.optional_number("deadline", self.deadline))
        put(
            "respect_retry_after",
            v.boolean("respect_retry_after", self.respect_retry_after),
        )
        if self.budget is not None and not isinstance(self.budget, core.RetryBudget):
            raise TypeError(
                f"budget must be a riprap.RetryBudget or None, got {type(self.budget).__name__}"
            )
        if self.seed is not None:
            put("seed", v.integer("seed", self.seed) & v.U64_MAX)
        put(
            "_schedule",
            core.RetrySchedule(
                strategy=self.backoff_strategy,
                base_delay=self.base_delay,
                max_delay=self.max_delay,
                exponential_base=self.exponential_base,
                jitter=self.jitter,
                jitter_range=self.jitter_range,
                max_attempts=min(self.max_attempts, v.U64_MAX),
                deadline=self.deadline,
                seed=self.seed,
            ),
        )
        put("_engine", make_engine(self, None, None, "riprap", counted=False))

    def compute_delay(self, attempt: int, previous: float | None = None) -> float:
        """The delay after failed attempt `attempt` (1-based), jitter included.

        Never raises for any attempt >= 1 and never returns inf, NaN or a negative number.
        `previous` is the last delay, used by "decorrelated" (default: `base_delay`).
        """
        return self._schedule.compute_delay(attempt, previous)

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether this policy retries `exc` (by type, status code or message).

        Control-flow exceptions (`CancelledError`, `KeyboardInterrupt`, ...) never are, even
        when `retryable_exceptions` lists `BaseException`. A status code must be an `int`.
        """
        return self._engine.is_retryable(exc)

    def attempts(
        self, *, clock: object = None, on_retry: OnRetry | None = None
    ) -> RetryAttempts:
        """Code-block retries: `for attempt in policy.attempts(): with attempt: ...`.

        The same object also supports `async for` (it then sleeps with asyncio).
        """
        return RetryAttempts(make_engine(self, clock, on_retry, "code block"), clock)


def make_engine(
    policy: RetryPolicy,
    clock: object,
    on_retry: OnRetry | None,
    name: str,
    *,
    counted: bool = True,
) -> core.RetryEngine:
    """Compile `policy` with a clock, a hook and a log name into a core `RetryEngine`.

    The engine counts its calls into the counters of operation `name` (shared by every engine
    of that name, read by the monitor and the metrics), unless `counted` is False.
    """
    return core.RetryEngine(
        policy._schedule,
        retryable_exceptions=policy.retryable_exceptions,
        status_codes=list(policy.retryable_status_codes),
        patterns=list(policy._patterns),
        retry_on_result=policy.retry_on_result,
        respect_retry_after=policy.respect_retry_after,
        budget=policy.budget,
        clock=check_clock(clock),
        on_retry=v.callable_or_none("on_retry", on_retry),
        name=name,
        counters=_registry.retry_counters(name) if counted else None,
    )


class RetryDecorator:
    """Decorator that retries a sync or async function, method, or callable under a policy.

    `@RetryDecorator(policy)` is the seed's spelling of `@riprap.retry(policy)`. The wrapper keeps
    `__wrapped__`, `__name__`, `__qualname__`, `__doc__`, the signature and
    `inspect.iscoroutinefunction`. On a sync function it is a native object that binds as a method;
    on an async function it is a coroutine function. Generator functions are refused with
    `TypeError`.

    Args:
        policy: The policy (default `RetryPolicy()`).
        clock: A `riprap.testing.ManualClock` to sleep on (default: real time).
        on_retry: Called as `on_retry(attempt, exception, delay)` before each retry sleep, with the
            number of the attempt that failed (`exception` is None for a `retry_on_result` retry).
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        clock: object = None,
        on_retry: OnRetry | None = None,
    ) -> None:
        if policy is None:
            policy = RetryPolicy()
        elif not isinstance(policy, RetryPolicy):
            raise TypeError(
                f"policy must be a RetryPolicy, got {type(policy).__name__}"
            )
        self.policy = policy
        self.clock = check_clock(clock)
        self.on_retry = v.callable_or_none("on_retry", on_retry)

    def __call__(self, func: F) -> F:
        def engine(f: Callable[..., Any]) -> core.RetryEngine:
            return make_engine(self.policy, self.clock, self.on_retry, name_of(f))

        checks = self.policy.retry_on_result is not None
        return cast(
            F,
            decorate(
                func,
                "riprap.retry",
                native=lambda f: core.RetryCall(f, engine(f)),
                coroutine=lambda f: _async_call(
                    f, engine(f), asleep_fn(self.clock), checks
                ),
            ),
        )


def _async_call(
    func: Callable[..., Awaitable[Any]],
    engine: core.RetryEngine,
    asleep: Callable[[float], Awaitable[object]],
    checks_result: bool,
) -> Callable[..., Any]:
    """The async decorator: a native coroutine function, or the Python wrapper below.

    Each call of the native one is a riprap `Coroutine` that runs the first attempt and, when
    the engine decides to retry, hands over to `_continuation` (sleeps on the event loop, makes
    the later attempts). An async callable that `inspect` cannot see as a coroutine function
    gets the Python wrapper (same decisions).
    """
    resume = _continuation(func, engine, asleep, checks_result)
    wrapper = core.RetryAsyncCall(func, engine, resume)
    if native_coroutine_function(wrapper, func):
        return wrapper
    return _async_wrapper(func, engine, asleep, checks_result)


def _continuation(
    func: Callable[..., Awaitable[Any]],
    engine: core.RetryEngine,
    asleep: Callable[[float], Awaitable[object]],
    checks_result: bool,
) -> Callable[..., Awaitable[Any]]:
    """What an async retry does after its first attempt failed and a retry was decided."""
    decide = engine.decide
    retry_result = engine.retry_result
    succeeded = engine.succeeded

    async def resume(
        start: float | None,
        attempt: int,
        delay: float,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
    ) -> Any:
        kwargs = kwargs or {}
        while True:
            if delay > 0.0:
                await asleep(delay)
            attempt, previous = attempt + 1, delay
            try:
                result = await func(*args, **kwargs)
            except Exception as exc:
                next_delay = decide(attempt, exc, start, previous)
                if next_delay is None:
                    raise
            else:
                if not (checks_result and retry_result(result)):
                    succeeded(attempt, start)
                    return result
                next_delay = decide(attempt, None, start, previous)
                if next_delay is None:
                    return result
            delay = next_delay

    return resume


def _async_wrapper(
    func: Callable[..., Awaitable[Any]],
    engine: core.RetryEngine,
    asleep: Callable[[float], Awaitable[object]],
    checks_result: bool,
) -> Callable[..., Any]:
    decide = engine.decide
    retry_result = engine.retry_result
    start_call = engine.start
    succeeded = engine.succeeded

    @functools.wraps(func)
    async def retried(*args: Any, **kwargs: Any) -> Any:
        start = start_call()
        attempt, previous = 1, None
        while True:
            try:
                result = await func(*args, **kwargs)
            except Exception as exc:
                delay = decide(attempt, exc, start, previous)
                if delay is None:
                    raise
            else:
                if not (checks_result and retry_result(result)):
                    succeeded(attempt, start)
                    return result
                delay = decide(attempt, None, start, previous)
                if delay is None:
                    return result
            if delay > 0.0:
                await asleep(delay)
            attempt, previous = attempt + 1, delay

    return retried


@overload
def retry(policy: F, /) -> F: ...
@overload
def retry(
    policy: RetryPolicy | None = None,
    *,
    clock: object = None,
    on_retry: OnRetry | None = None,
    **fields: Any,
) -> RetryDecorator: ...
def retry(
    policy: Any = None,
    *,
    clock: object = None,
    on_retry: OnRetry | None = None,
    **fields: Any,
) -> Any:
    """Retry a function under a policy: `@riprap.retry`, `@riprap.retry(policy)`, or fields.

    Examples:
        `@riprap.retry(max_attempts=5, base_delay=0.1)`, or
        `@riprap.retry(NETWORK_RETRY_POLICY, on_retry=log_it)`. Fields given with a policy
        override its values.

    Args:
        policy: A `RetryPolicy` (default `RetryPolicy()`), or the function itself when used as a
            bare `@riprap.retry`.
        clock: A `riprap.testing.ManualClock` to sleep on (default: real time).
        on_retry: Called as `on_retry(attempt, exception, delay)` before each retry sleep.
        **fields: `RetryPolicy` fields.

    Returns:
        A `RetryDecorator` (or, used bare, the wrapped function).
    """
    if policy is not None and not isinstance(policy, RetryPolicy):
        if callable(policy) and not fields:
            return RetryDecorator(None, clock=clock, on_retry=on_retry)(policy)
        raise TypeError(f"policy must be a RetryPolicy, got {type(policy).__name__}")
    if fields:
        policy = dataclasses.replace(policy or RetryPolicy(), **fields)
    return RetryDecorator(policy, clock=clock, on_retry=on_retry)


class _Run:
    """The state one code-block retry loop shares with its attempts."""

    __slots__ = ("engine", "previous", "start")

    def __init__(self, engine: core.RetryEngine) -> None:
        self.engine = engine
        self.start = engine.start()
        self.previous: float | None = None


class Attempt:
    """One attempt of a code-block retry; use it as `with attempt:`.

    Attributes:
        number: 1 for the first attempt.
    """

    __slots__ = ("_delay", "_run", "number")

    def __init__(self, number: int, run: _Run) -> None:
        self.number = number
        self._run = run
        self._delay: float | None = None

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # Decided here, while `exc` is being handled: an error the decision raises (a hook, a
        # failing property of the exception) carries `exc` as its context. Swallow only what
        # will be retried; when retrying stops, the exception propagates as it is.
        if exc is None:
            run = self._run
            run.engine.succeeded(self.number, run.start)
            return False
        if not isinstance(exc, Exception):
            return False
        run = self._run
        self._delay = run.engine.decide(self.number, exc, run.start, run.previous)
        return self._delay is not None

    def __repr__(self) -> str:
        return f"Attempt(number={self.number})"


class RetryAttempts:
    """The iterable `policy.attempts()` returns; supports `for` and `async for`."""

    __slots__ = ("_asleep", "_engine")

    def __init__(self, engine: core.RetryEngine, clock: object) -> None:
        self._engine = engine
        self._asleep = asleep_fn(check_clock(clock))

    def __iter__(self) -> Iterator[Attempt]:
        run = _Run(self._engine)
        number = 1
        while True:
            attempt = Attempt(number, run)
            yield attempt
            delay = attempt._delay
            if delay is None:
                return
            if delay > 0.0:
                run.engine.sleep(delay)
            number, run.previous = number + 1, delay

    async def __aiter__(self) -> AsyncIterator[Attempt]:
        run = _Run(self._engine)
        number = 1
        while True:
            attempt = Attempt(number, run)
            yield attempt
            delay = attempt._delay
            if delay is None:
                return
            if delay > 0.0:
                await self._asleep(delay)
            number, run.previous = number + 1, delay


NETWORK_RETRY_POLICY = RetryPolicy(
    max_attempts=5,
    base_delay=1.0,
    max_delay=30.0,
    exponential_base=2.0,
    jitter=True,
    retryable_exceptions=(ConnectionError, TimeoutError, OSError),
)
DATABASE_RETRY_POLICY = RetryPolicy(
    max_attempts=3,
    base_delay=0.5,
    max_delay=10.0,
    exponential_base=2.0,
    jitter=True,
    retryable_exceptions=(ConnectionError, TimeoutError),
)
API_RETRY_POLICY = RetryPolicy(
    max_attempts=4,
    base_delay=2.0,
    max_delay=60.0,
    exponential_base=1.5,
    jitter=True,
    retryable_status_codes=(429, 502, 503, 504),
)
