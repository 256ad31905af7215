"""Reference twin of `rust/core/src/retry.rs` and `rust/py/src/retry.rs`.

`RetrySchedule` is a compiled retry policy: backoff, attempt limit, deadline and jitter stream.

The engine is a compiled retry policy: it classifies a failure, asks the schedule for the next
delay (Retry-After, deadline), checks the budget, logs, calls `on_retry` and waits on the clock.
`RetryCall` runs a sync function under it. Control-flow exceptions are not `Exception`s and pass
straight through; when retries run out the caller's own last exception is re-raised.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from .._deadlines import remaining
from .._errors import REJECTIONS, ResilienceError
from .._http import parse_retry_after
from .._validate import U64_MAX, check_float, check_int
from ._awaitable import Coroutine, Drive, Handover
from ._backoff import Backoff, backoff_config
from ._backoff import attempt as _attempt
from ._budget import RetryBudget
from ._clock import ManualClock, clock_of, sleep_real
from ._retry_counters import RetryCounters
from ._wrapper import AsyncNativeWrapper, NativeWrapper

__all__ = ["RetryAsyncCall", "RetryCall", "RetryEngine", "RetryGuard", "RetrySchedule"]

GIVE_UP_ATTEMPTS = "attempts exhausted"
GIVE_UP_DEADLINE = "the next wait would cross the deadline"
GIVE_UP_BUDGET = "the retry budget is spent"

logger = logging.getLogger("riprap")


class RetrySchedule:
    """A validated retry schedule: backoff, attempt limit, deadline and jitter stream."""

    def __init__(
        self,
        *,
        strategy: str,
        base_delay: float,
        max_delay: float,
        exponential_base: float,
        jitter: bool,
        jitter_range: float,
        max_attempts: int,
        deadline: float | None,
        seed: int | None,
    ) -> None:
        cfg = backoff_config(
            strategy=strategy,
            base_delay=base_delay,
            max_delay=max_delay,
            exponential_base=exponential_base,
            jitter=jitter,
            jitter_range=jitter_range,
        )
        check_int("max_attempts", max_attempts, 1)
        if deadline is not None:
            check_float("deadline", deadline, 0.0, False)
        self._backoff = Backoff(cfg, seed)
        self._max_attempts = min(max_attempts, U64_MAX)
        self._deadline = deadline

    def compute_delay(self, attempt: object, previous: float | None = None) -> float:
        """The delay after failed attempt `attempt` (1-based)."""
        return self._backoff.delay_scaled(_attempt(attempt), previous, 1.0)

    def next_delay(
        self,
        failed_attempt: int,
        elapsed: float,
        previous: float | None = None,
        retry_after: float | None = None,
    ) -> float | None:
        """The delay before the next attempt, or None to give up now."""
        if failed_attempt >= self._max_attempts:
            return None
        if retry_after is not None and not math.isnan(retry_after):
            delay = min(max(retry_after, 0.0), self._backoff.cfg.max_delay)
        else:
            delay = self._backoff.delay_scaled(failed_attempt, previous, 1.0)
        if self._deadline is not None and elapsed + delay > self._deadline:
            return None
        return delay

    def decide(
        self,
        attempt: int,
        elapsed: float,
        previous: float | None,
        retry_after: float | None,
        *,
        time_left: float | None,
        withdraw: Callable[[], bool],
    ) -> tuple[float | None, str]:
        """The whole decision after a failed attempt: `(delay, "")` or `(None, reason)`.

        The attempt limit first, then the delay, then the policy's deadline and `time_left`
        (seconds before an enclosing deadline), and last `withdraw`, the retry budget: it is
        only asked for a retry that would otherwise be made.
        """
        if attempt >= self._max_attempts:
            return None, GIVE_UP_ATTEMPTS
        delay = self.next_delay(attempt, elapsed, previous, retry_after)
        if delay is None or (time_left is not None and delay > time_left):
            return None, GIVE_UP_DEADLINE
        if not withdraw():
            return None, GIVE_UP_BUDGET
        return delay, ""

    @property
    def max_attempts(self) -> int:
        """Total attempts allowed."""
        return self._max_attempts

    @property
    def deadline(self) -> float | None:
        """The deadline in seconds, if any."""
        return self._deadline


def _describe(exc: BaseException | None) -> str:
    return (
        "result rejected by retry_on_result"
        if exc is None
        else f"{type(exc).__name__}: {exc}"
    )


def _retry_after(exc: BaseException) -> float | None:
    ra = getattr(exc, "retry_after", None)
    if isinstance(ra, (int, float)) and not isinstance(ra, bool):
        return float(ra)
    headers = getattr(exc, "headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        if response is None:
            return None
        headers = getattr(response, "headers", None)
        if headers is None:
            return None
    get = getattr(headers, "get", None)
    if get is None:
        return None
    try:
        value = get("Retry-After")
        if not value:
            value = get("retry-after")
    except Exception:
        return None
    if not isinstance(value, str):
        return None
    return parse_retry_after(value)


class RetryEngine:
    """A compiled retry policy and the operation's counters.

    The policy: classification, schedule, budget, clock, hook and log name.
    """

    def __init__(
        self,
        schedule: RetrySchedule,
        *,
        retryable_exceptions: tuple[type[BaseException], ...],
        status_codes: list[int],
        patterns: list[str],
        retry_on_result: Callable[[Any], object] | None,
        respect_retry_after: bool,
        budget: RetryBudget | None,
        clock: object,
        on_retry: Callable[..., object] | None,
        name: str,
        counters: RetryCounters | None = None,
    ) -> None:
        self._schedule = schedule
        self._retryable = retryable_exceptions
        self._named_rejections = tuple(
            t
            for t in retryable_exceptions
            if isinstance(t, type) and issubclass(t, ResilienceError)
        )
        self._status_codes = list(status_codes)
        self._patterns = list(patterns)
        self._predicate = retry_on_result
        self._respect_retry_after = respect_retry_after
        self._budget = budget
        self._clock = clock_of(clock)
        self._on_retry = on_retry
        self._name = name
        self._counters = counters

    @property
    def name(self) -> str:
        """The name used in log lines."""
        return self._name

    def _now(self) -> float:
        return self._clock.now_ns() / 1e9

    @property
    def counters(self) -> RetryCounters | None:
        """The operation's counters (None: this engine counts nothing)."""
        return self._counters

    def _timing(self) -> bool:
        return self._counters is not None and self._counters.timing

    def start(self) -> float | None:
        """Starts a retried call: budget deposit, and the start time if anything needs it.

        A deadline or the duration histogram does.
        """
        if self._budget is not None:
            self._budget.deposit()
        if self._schedule.deadline is not None or self._timing():
            return self._now()
        return None

    @property
    def needs_start(self) -> bool:
        """Whether `start()` does anything now (a budget, a deadline, or timing is on)."""
        return (
            self._budget is not None
            or self._schedule.deadline is not None
            or self._timing()
        )

    def _duration(self, start: float | None) -> float | None:
        if start is None or not self._timing():
            return None
        return self._now() - start

    def succeeded(self, attempt: int, start: float | None) -> None:
        """The call that started at `start` succeeded at attempt `attempt`: counts it."""
        if self._counters is not None:
            self._counters.succeeded(attempt, self._duration(start))

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether the policy retries `exc` (by type, status code or message).

        riprap's own rejections are retried only when a retryable class that is riprap's own
        (`CircuitOpenError`, `ResilienceError`, ...) matches them.
        """
        if not isinstance(exc, Exception):
            return False
        if isinstance(exc, REJECTIONS):
            return isinstance(exc, self._named_rejections)
        if isinstance(exc, self._retryable):
            return True
        if self._status_codes:
            status = getattr(exc, "status_code", None)
            if status is None:
                status = getattr(exc, "status", None)
            if isinstance(status, int) and status in self._status_codes:
                return True
        if self._patterns:
            message = str(exc).lower()
            return any(p in message for p in self._patterns)
        return False

    def retry_result(self, result: object) -> bool:
        """Whether `retry_on_result` asks to retry this result."""
        return self._predicate is not None and bool(self._predicate(result))

    def decide(
        self,
        attempt: int,
        exc: BaseException | None,
        start: float | None,
        previous: float | None,
    ) -> float | None:
        """The delay before the next attempt after attempt `attempt` failed, or None to stop.

        Call it while `exc` is being handled (in its `except` block): an error raised here then
        carries `exc` as its `__context__` (the Rust engine makes `exc` the handled exception
        itself). Every form of retry calls it once per failed attempt, so the operation's
        counters are kept here: the failed attempt and, unless the answer is a retry, the call's
        failure.
        """
        counters = self._counters
        if counters is not None:
            counters.failed_attempt(attempt)
        delay: float | None = None
        try:
            delay = self._decide(attempt, exc, start, previous)
        finally:
            if counters is not None and delay is None:
                counters.gave_up(self._duration(start))
        return delay

    def _decide(
        self,
        attempt: int,
        exc: BaseException | None,
        start: float | None,
        previous: float | None,
    ) -> float | None:
        retry_after = None
        if exc is not None:
            if not self.is_retryable(exc):
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(f"{self._name}: {exc!r} is not retryable")
                return None
            if self._respect_retry_after:
                retry_after = _retry_after(exc)
        elapsed = self._now() - start if start is not None else 0.0
        budget = self._budget
        delay, reason = self._schedule.decide(
            attempt,
            elapsed,
            previous,
            retry_after,
            # An enclosing `riprap.deadline` / `riprap.timeout`: no sleep may cross it either.
            time_left=remaining(),
            withdraw=budget.try_withdraw if budget is not None else lambda: True,
        )
        max_attempts = self._schedule.max_attempts
        if delay is None:
            if logger.isEnabledFor(logging.ERROR):
                logger.error(
                    "%s: attempt %d of %d failed (%s); giving up: %s",
                    self._name,
                    attempt,
                    max_attempts,
                    _describe(exc),
                    reason,
                )
            return None
        if logger.isEnabledFor(logging.WARNING):
            logger.warning(
                "%s: attempt %d of %d failed (%s); retrying in %.3fs",
                self._name,
                attempt,
                max_attempts,
                _describe(exc),
                delay,
            )
        if self._on_retry is not None:
            self._on_retry(attempt, exc, delay)
        return delay

    def sleep(self, seconds: float) -> None:
        """Blocks for `seconds` on the engine's clock (a ManualClock just advances)."""
        if isinstance(self._clock, ManualClock):
            self._clock.advance(seconds)
        elif seconds > 0:
            sleep_real(seconds)

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs `func(*args, **kwargs)` with retries (what a decorated sync function does)."""
        start = self.start()
        attempt, previous = 1, None
        while True:
            try:
                result = func(*args, **kwargs)
            except Exception as exc:
                # Decided inside the `except` block, so whatever the decision raises carries
                # this attempt's exception as its context.
                delay = self.decide(attempt, exc, start, previous)
                if delay is None:
                    raise
            else:
                if self._predicate is None or not self.retry_result(result):
                    self.succeeded(attempt, start)
                    return result
                delay = self.decide(attempt, None, start, previous)
                if delay is None:
                    return result
            if delay > 0.0:
                self.sleep(delay)
            attempt, previous = attempt + 1, delay

    def _run(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return self.call(func, *args, **kwargs)

    def _arun(
        self,
        func: Callable[..., Any],
        slow: Callable[..., Any] | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if slow is None:
            raise TypeError("RetryAsyncCall needs its continuation")
        inner = func(*args, **kwargs)
        return Coroutine(func, inner, RetryGuard(self, slow, args, kwargs or None))


class RetryCall(NativeWrapper[RetryEngine]):
    """A retried sync function (see `riprap.retry`)."""

    __slots__ = ()
    _kind = "RetryCall"

    @property
    def retry_engine(self) -> RetryEngine:
        """The retry engine (policy, clock and hooks) this function runs under."""
        return self._engine


class RetryGuard:
    """Retry's part in one awaited call (twin of the binding's `RetryGuard`).

    The first attempt (a budget deposit and the start time first); when the engine decides to
    retry, a hand-over to `resume(start, attempt, delay, args, kwargs)`.
    """

    __slots__ = ("_args", "_engine", "_kwargs", "_resume", "_start")

    def __init__(
        self,
        engine: RetryEngine,
        resume: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
    ) -> None:
        self._engine = engine
        self._resume = resume
        self._args = args
        self._kwargs = kwargs
        self._start: float | None = None

    def start(self, inner: Any) -> Drive:
        """The first attempt starts."""
        self._start = self._engine.start()
        return Drive(inner)

    def _handover(self, delay: float) -> Handover:
        return Handover(self._resume(self._start, 1, delay, self._args, self._kwargs))

    def returned(self, value: Any) -> Any:
        """Attempt 1 returned: done, unless `retry_on_result` asks for another attempt."""
        engine = self._engine
        if engine._predicate is None or not engine.retry_result(value):
            engine.succeeded(1, self._start)
            return value
        delay = engine.decide(1, None, self._start, None)
        return value if delay is None else self._handover(delay)

    def raised(self, exc: BaseException) -> Any:
        """Attempt 1 raised (called while `exc` is handled): re-raise, or hand over."""
        if not isinstance(exc, Exception):
            raise  # noqa: PLE0704 - a control-flow exception, straight back untouched
        delay = self._engine.decide(1, exc, self._start, None)
        if delay is None:
            raise  # noqa: PLE0704
        return self._handover(delay)

    def abandon(self) -> None:
        """Nothing to give back."""


class RetryAsyncCall(AsyncNativeWrapper[RetryEngine]):
    """A retried coroutine function (see `riprap.retry`)."""

    __slots__ = ()
    _kind = "RetryAsyncCall"

    @property
    def retry_engine(self) -> RetryEngine:
        """The engine this function runs under."""
        return self._engine
