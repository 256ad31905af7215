"""Type stubs for riprap._core, the Rust backend (hand-written, checked by stubtest).

`riprap._reference` implements the same names with the same signatures in pure Python.
"""

import contextvars
from collections.abc import Callable
from typing import Any, Self, final

from typing_extensions import disjoint_base

from riprap._stats import (
    CircuitBreakerStats,
    KeyedRateLimiterStats,
    RateLimiterStats,
    RetryBudgetStats,
    RetryCountersSnapshot,
)

__all__ = [
    "AdaptiveBackoff",
    "BreakerAsyncCall",
    "BreakerCall",
    "BreakerConfig",
    "BreakerEngine",
    "BreakerPermit",
    "BulkheadAsyncCall",
    "BulkheadCall",
    "BulkheadConfig",
    "BulkheadEngine",
    "BulkheadPermit",
    "Coroutine",
    "KeyedLimit",
    "KeyedLimitedCall",
    "KeyedRateLimiter",
    "LimitedAsyncCall",
    "LimitedCall",
    "ManualClock",
    "RateLimiter",
    "RetryAsyncCall",
    "RetryBudget",
    "RetryCall",
    "RetryCounters",
    "RetryEngine",
    "RetrySchedule",
    "Rng",
    "__version__",
    "monotonic",
    "note_fork",
    "real_sleeps",
]
__version__: str

def monotonic() -> float:
    """Seconds on the monotonic clock the Rust primitives use (origin: the first read)."""

def real_sleeps() -> int:
    """How many real sleeps native code has made in this process (one per slice of a wait).

    A patched `time.sleep` cannot see a sleep made in Rust; tests read this instead.
    """

def note_fork() -> None:
    """Tells every unseeded generator the process forked (registered with `os.register_at_fork`)."""

@disjoint_base
class ManualClock:
    """A manually driven clock shared by every primitive given it (`clock=`)."""

    def __new__(cls, start: float | None = None) -> ManualClock: ...
    def now(self) -> float:
        """The current time in seconds."""
    def now_ns(self) -> int:
        """The current time in whole nanoseconds."""
    def advance(self, seconds: float) -> None:
        """Moves time forward by `seconds` (saturating at the end of time)."""
    def sleep(self, seconds: float) -> None:
        """Like `advance`: a sleep on a manual clock passes no real time."""
    def set(self, seconds: float) -> None:
        """Sets the time, forwards or backwards (to test a clock that steps back)."""

@final
class Rng:
    """wyrand: `Rng(seed)` gives the same stream on both backends; `Rng()` seeds from entropy."""

    def __new__(cls, seed: int | None = None) -> Rng: ...
    def next_u64(self) -> int:
        """The next 64 random bits."""
    def next_f64(self) -> float:
        """A uniform float in [0, 1)."""

@final
class RetryCounters:
    """The counters of one retried operation.

    Attempts by number, final successes and failures, and a duration histogram (when timing is
    on).
    """

    duration_bounds: list[float]
    def __new__(cls) -> RetryCounters: ...
    @property
    def timing(self) -> bool:
        """Whether call durations are measured."""
    def set_timing(self, on: bool) -> None:
        """Turns the duration histogram on or off."""
    def snapshot(self) -> RetryCountersSnapshot:
        """The counts now."""
    def failed_attempt(self, attempt: int) -> None:
        """Records that attempt number `attempt` failed."""
    def succeeded(self, attempt: int, seconds: float | None = None) -> None:
        """Records that a call succeeded at attempt `attempt`, after `seconds` if timed."""
    def gave_up(self, seconds: float | None = None) -> None:
        """Records that a call ended without an accepted result, after `seconds` if timed."""

@final
class RetrySchedule:
    """A validated retry schedule: backoff, attempt limit, deadline and jitter stream."""

    def __new__(
        cls,
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
    ) -> RetrySchedule: ...
    def compute_delay(self, attempt: int, previous: float | None = None) -> float:
        """The delay after failed attempt `attempt` (1-based)."""
    def next_delay(
        self,
        failed_attempt: int,
        elapsed: float,
        previous: float | None = None,
        retry_after: float | None = None,
    ) -> float | None:
        """The delay before the next attempt, or None to give up now."""
    @property
    def max_attempts(self) -> int: ...
    @property
    def deadline(self) -> float | None: ...

@final
class AdaptiveBackoff:
    """Backoff stretched or shrunk by each operation's recent success rate."""

    def __new__(
        cls,
        *,
        strategy: str,
        base_delay: float,
        max_delay: float,
        exponential_base: float,
        jitter: bool,
        jitter_range: float,
        seed: int | None,
    ) -> AdaptiveBackoff: ...
    def delay(self, operation_id: str, attempt: int) -> float:
        """The delay after failed attempt `attempt` of `operation_id`."""
    def record(self, operation_id: str, success: bool) -> None:
        """Records one result of `operation_id`."""
    def success_rate(self, operation_id: str) -> float:
        """The success rate over the last 100 results (0.8 with none)."""
    def __len__(self) -> int: ...

@final
class RetryBudget:
    """A retry budget shared by every policy that holds it.

    Retries are allowed while `retries + 1 <= ratio x first attempts + min_per_second x window`
    over the last `window` seconds (a ring of ten buckets).
    """

    def __new__(
        cls,
        ratio: float | None = None,
        min_per_second: float | None = None,
        window: float | None = None,
        *,
        clock: ManualClock | None = None,
    ) -> RetryBudget: ...
    def deposit(self) -> None:
        """Records a first attempt."""
    def try_withdraw(self) -> bool:
        """Takes one retry from the budget; False means the retry must not be made."""
    @property
    def ratio(self) -> float: ...
    @property
    def min_per_second(self) -> float: ...
    @property
    def window(self) -> float: ...
    def get_stats(self) -> RetryBudgetStats:
        """Counters: the window's first attempts and retries, what is left, lifetime totals."""

@final
class RetryEngine:
    """A compiled retry policy: classification, schedule, budget, clock, hook and log name."""

    def __new__(
        cls,
        schedule: RetrySchedule,
        *,
        retryable_exceptions: tuple[type[BaseException], ...],
        status_codes: list[int],
        patterns: list[str],
        retry_on_result: Callable[[Any], object] | None,
        respect_retry_after: bool,
        budget: RetryBudget | None,
        clock: ManualClock | None,
        on_retry: Callable[..., object] | None,
        name: str,
        counters: RetryCounters | None = None,
    ) -> RetryEngine: ...
    @property
    def name(self) -> str: ...
    @property
    def counters(self) -> RetryCounters | None:
        """The operation's counters (None: this engine counts nothing)."""
    def start(self) -> float | None:
        """Starts a retried call: budget deposit, and the start time if anything needs it.

        A deadline or the duration histogram does.
        """
    @property
    def needs_start(self) -> bool:
        """Whether `start()` does anything now (a budget, a deadline, or timing is on)."""
    def succeeded(self, attempt: int, start: float | None) -> None:
        """The call that started at `start` succeeded at attempt `attempt`: counts it."""
    def decide(
        self,
        attempt: int,
        exc: BaseException | None,
        start: float | None,
        previous: float | None,
    ) -> float | None:
        """The delay before the next attempt after attempt `attempt` failed, or None to stop."""
    def is_retryable(self, exc: BaseException) -> bool:
        """Whether the policy retries `exc` (by type, status code or message)."""
    def retry_result(self, result: object) -> bool:
        """Whether `retry_on_result` asks to retry this result."""
    def sleep(self, seconds: float) -> None:
        """Blocks for `seconds` on the engine's clock (GIL released, Ctrl-C honoured)."""
    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs `func(*args, **kwargs)` with retries (what a decorated sync function does)."""

@final
class RetryCall:
    """A retried sync function (see `riprap.retry`)."""

    def __new__(cls, func: Callable[..., Any], engine: RetryEngine) -> RetryCall: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...
    @property
    def retry_engine(self) -> RetryEngine: ...

@final
class RetryAsyncCall:
    """A retried coroutine function (see `riprap.retry`)."""

    def __new__(
        cls,
        func: Callable[..., Any],
        engine: RetryEngine,
        slow: Callable[..., Any] | None = None,
    ) -> RetryAsyncCall: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...
    @property
    def retry_engine(self) -> RetryEngine: ...

@final
class BreakerConfig:
    """A validated breaker configuration (the numeric fields of `CircuitBreakerConfig`)."""

    def __new__(
        cls,
        *,
        failure_threshold: int,
        timeout: float,
        success_threshold: int,
        monitoring_window: float,
        failure_rate_threshold: float,
        minimum_calls: int,
        half_open_max_calls: int,
        slow_call_duration: float | None,
        slow_call_rate_threshold: float,
    ) -> BreakerConfig: ...
    @property
    def bucket_width(self) -> float:
        """The width of one window bucket in seconds (the window's edge moves in these steps)."""

@final
class BreakerPermit:
    """Permission for one call through a breaker; hand it back once with `record` or `release`."""

    @property
    def is_trial(self) -> bool:
        """Whether this permit is a half-open trial call."""
    @property
    def returned(self) -> bool:
        """Whether the permit was handed back already."""

@final
class BreakerEngine:
    """A circuit breaker: the core state machine plus its clock, classification and hook."""

    def __new__(
        cls,
        name: str,
        config: BreakerConfig,
        *,
        expected_exception: tuple[type[BaseException], ...],
        excluded_exceptions: tuple[type[BaseException], ...],
        clock: ManualClock | None,
        on_transition: Callable[[str, str], object] | None,
    ) -> BreakerEngine: ...
    @property
    def name(self) -> str:
        """The breaker's name."""
    def acquire(self) -> BreakerPermit:
        """Admit a call (a permit to hand back once) or raise a fresh `CircuitOpenError`."""
    def record(self, permit: BreakerPermit, exc: BaseException | None = None) -> None:
        """Hands back a permit: `exc=None` is a success; an exception is classified.

        A second return is a no-op; another breaker's permit is a `ValueError`.
        """
    def release(self, permit: BreakerPermit) -> None:
        """Gives a permit back without an outcome (the call did not finish)."""
    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs `func(*args, **kwargs)` through the breaker."""
    @property
    def state(self) -> str:
        """The state's value string (a due OPEN -> HALF_OPEN happens here)."""
    def stats(self) -> CircuitBreakerStats:
        """A snapshot (a due OPEN -> HALF_OPEN happens here)."""
    def reset(self) -> None:
        """Back to CLOSED with an empty window (lifetime totals are kept)."""
    def force_open(self) -> None:
        """Opens the breaker now, as if it had tripped."""

@final
class BreakerCall:
    """A sync function guarded by a circuit breaker."""

    def __new__(
        cls, func: Callable[..., Any], engine: BreakerEngine
    ) -> BreakerCall: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...
    @property
    def breaker_engine(self) -> BreakerEngine: ...

@final
class BreakerAsyncCall:
    """A coroutine function guarded by a circuit breaker."""

    def __new__(
        cls,
        func: Callable[..., Any],
        engine: BreakerEngine,
        slow: Callable[..., Any] | None = None,
    ) -> BreakerAsyncCall: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...
    @property
    def breaker_engine(self) -> BreakerEngine: ...

@final
class BulkheadConfig:
    """A validated bulkhead configuration (the fields of `riprap.BulkheadConfig`)."""

    def __new__(
        cls,
        *,
        max_concurrent_calls: int,
        max_queue_size: int,
        timeout: float,
        isolation_level: str,
        max_wait: float | None,
        slow_call_duration: float | None,
    ) -> BulkheadConfig: ...
    @property
    def capacity(self) -> int:
        """The most calls admitted at once (20 % more than `max_concurrent_calls` for "shared")."""

@final
class BulkheadPermit:
    """One slot of a bulkhead; hand it back once with `release`."""

    @property
    def returned(self) -> bool:
        """Whether the permit was handed back already."""

@disjoint_base
class BulkheadEngine:
    """A bulkhead: the core state machine plus its clock, classification and waiters."""

    def __new__(
        cls,
        name: str,
        config: BulkheadConfig,
        *,
        clock: ManualClock | None = None,
        ignored: tuple[type[BaseException], ...] | None = None,
        held: contextvars.ContextVar[bool] | None = None,
    ) -> Self: ...
    @property
    def name(self) -> str:
        """The bulkhead's name."""
    @property
    def clock(self) -> Any:
        """The clock given (`None`: the monotonic clock)."""
    @property
    def current_limit(self) -> int:
        """The admission limit now (it moves only in adaptive mode)."""
    @property
    def timeout(self) -> float:
        """Seconds a call may run (`execute`, async calls) before it times out."""
    @property
    def max_wait(self) -> float | None:
        """Seconds a caller may wait in the queue (`None`: no limit)."""
    def try_acquire(self) -> BulkheadPermit | None:
        """Takes a free slot when nobody waits; `None` otherwise (never waits, never rejects)."""
    def acquire(self) -> BulkheadPermit:
        """A slot, waiting if needed (GIL released, Ctrl-C honoured).

        Raises a fresh `BulkheadRejectedError` when the queue is full, `max_wait` runs out, the
        caller's deadline comes first, or it already holds a slot and would have to wait.
        """
    def release(self, permit: BulkheadPermit, exc: BaseException | None = None) -> None:
        """Hands a permit back: `exc=None` for a call that returned, else its exception.

        A second return is a no-op; another bulkhead's permit is a `ValueError`.
        """
    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs `func(*args, **kwargs)` in a slot (what a decorated sync function does)."""
    def _acquire(self, reentrant: bool, deadline: float | None) -> BulkheadPermit | int:
        """Admits (a permit), queues (a ticket) or raises `BulkheadRejectedError`; never waits."""
    def _claim(self, ticket: int) -> BulkheadPermit | None:
        """The permit `ticket` was granted (`None` while it waits); raises when rejected."""
    def _cancel(self, ticket: int) -> None:
        """The waiter holding `ticket` gives up (a slot handed to it goes on)."""
    def _watch(self, ticket: int, callback: Callable[[], object]) -> None:
        """Calls `callback()` when `ticket` is granted or runs out of `max_wait`."""
    def _unwatch(self, ticket: int) -> None:
        """Forgets `ticket`'s callback."""
    def _timed_out(self, permit: BulkheadPermit) -> None:
        """Records that the call holding `permit` timed out; the slot stays taken."""
    def _call_held(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Calls `func` with this thread marked as holding a slot; takes no slot."""
    def _step(self, aw: Any, value: Any) -> tuple[bool, Any]:
        """Runs one step of the awaitable `aw`, marked as holding a slot of this bulkhead.

        `(True, result)` when `aw` finished, `(False, yielded)` when it suspended.
        """
    def _throw(self, aw: Any, exc: BaseException) -> tuple[bool, Any]:
        """Throws `exc` into `aw` (marked as `_step` does)."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        _exc_type: object = None,
        exc: BaseException | None = None,
        _tb: object = None,
    ) -> None: ...
    def get_stats(self) -> dict[str, Any]:
        """A snapshot; see `Bulkhead.get_stats`."""

@final
class BulkheadCall:
    """A sync function guarded by a bulkhead (see `Bulkhead.__call__`)."""

    def __new__(
        cls, func: Callable[..., Any], engine: BulkheadEngine
    ) -> BulkheadCall: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...
    @property
    def bulkhead_engine(self) -> BulkheadEngine: ...

@final
class BulkheadAsyncCall:
    """A coroutine function guarded by a bulkhead (see `Bulkhead.__call__`)."""

    def __new__(
        cls,
        func: Callable[..., Any],
        engine: BulkheadEngine,
        slow: Callable[..., Any] | None = None,
    ) -> BulkheadAsyncCall: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...
    @property
    def bulkhead_engine(self) -> BulkheadEngine: ...

@disjoint_base
class RateLimiter:
    """A GCRA token bucket: `rate` tokens per second, `burst` at most, starting full."""

    def __new__(
        cls,
        rate: float,
        burst: float | None = None,
        *,
        name: str | None = None,
        on_limit: str = "wait",
        clock: ManualClock | None = None,
        storage: object = None,
        on_storage_error: str | None = None,
    ) -> Self: ...
    def try_acquire(self, n: int = 1) -> bool:
        """Takes `n` tokens if they are available now; never waits."""
    def acquire(self, n: int = 1, timeout: float | None = None) -> None:
        """Takes `n` tokens, blocking (GIL released) until they are available.

        Raises `RateLimitExceeded` at once if the wait would exceed `timeout` seconds.
        """
    def _reserve(self, n: int | None, timeout: float | None) -> int:
        """Reserves `n` tokens: 0 when admitted at once, else a ticket to wait on."""
    def _remaining(self, ticket: int) -> float:
        """Seconds until `ticket`'s slot (0.0: due)."""
    def _complete(self, ticket: int) -> None:
        """The waiter holding `ticket` proceeds."""
    def _cancel(self, ticket: int) -> None:
        """The waiter holding `ticket` gave up: give its slot back, wake those behind it."""
    def _watch(self, ticket: int, callback: Callable[[], object]) -> None:
        """Calls `callback()` whenever `ticket`'s slot moves earlier."""
    def _unwatch(self, ticket: int) -> None:
        """Forgets `ticket`'s callback."""
    def __enter__(self) -> Self: ...
    def __exit__(self, *_exc: object) -> None: ...
    def get_stats(self) -> RateLimiterStats:
        """Counters: `name`, `rate`, `burst`, `admitted`, `rejected`, `waited`."""
    @property
    def name(self) -> str | None: ...
    @property
    def rate(self) -> float: ...
    @property
    def burst(self) -> float: ...
    @property
    def on_limit(self) -> str: ...
    @property
    def clock(self) -> Any: ...

@final
class LimitedCall:
    """A rate-limited sync function (see `RateLimiter.__call__`)."""

    def __new__(cls, func: Callable[..., Any], engine: RateLimiter) -> LimitedCall: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...
    @property
    def limiter(self) -> RateLimiter: ...

@final
class LimitedAsyncCall:
    """A rate-limited coroutine function (see `RateLimiter.__call__`)."""

    def __new__(
        cls,
        func: Callable[..., Any],
        engine: RateLimiter,
        slow: Callable[..., Any] | None = None,
    ) -> LimitedAsyncCall: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...
    @property
    def limiter(self) -> RateLimiter: ...

@disjoint_base
class KeyedRateLimiter:
    """One GCRA bucket per key: `rate` tokens per second and `burst` at most for each key.

    Holds exactly `max_keys` keys before it forgets any; then a new key forgets every idle key
    (bucket full again), and the keys closest to full until `max(1, max_keys // 64)` have gone;
    never a key with waiters.
    """

    def __new__(
        cls,
        rate: float,
        burst: float | None = None,
        *,
        name: str | None = None,
        max_keys: int = 1000000,
        idle_ttl: float | None = None,
        clock: ManualClock | None = None,
        storage: object = None,
        on_storage_error: str | None = None,
    ) -> Self: ...
    def try_acquire(self, key: object, n: int = 1) -> bool:
        """Takes `n` tokens from `key`'s bucket if they are available now; never waits."""
    def acquire(self, key: object, n: int = 1, timeout: float | None = None) -> None:
        """Takes `n` tokens from `key`'s bucket, blocking (GIL released) until available.

        Raises `RateLimitExceeded` at once if the wait would exceed `timeout` seconds.
        """
    def _reserve(self, key: object, n: int | None, timeout: float | None) -> int:
        """Reserves `n` tokens of `key`: 0 when admitted at once, else a ticket to wait on."""
    def _remaining(self, key: object, ticket: int) -> float:
        """Seconds until `ticket`'s slot on `key` (0.0: due)."""
    def _complete(self, key: object, ticket: int) -> None:
        """The waiter holding `ticket` on `key` proceeds."""
    def _cancel(self, key: object, ticket: int) -> None:
        """The waiter holding `ticket` on `key` gave up: give its slot back."""
    def _watch(self, ticket: int, callback: Callable[[], object]) -> None:
        """Calls `callback()` whenever `ticket`'s slot moves earlier."""
    def _unwatch(self, ticket: int) -> None:
        """Forgets `ticket`'s callback."""
    def __len__(self) -> int: ...
    def get_stats(self) -> KeyedRateLimiterStats:
        """Counters: name, rate, burst, admitted, rejected, waited, keys, evicted."""
    @property
    def name(self) -> str | None: ...
    @property
    def rate(self) -> float: ...
    @property
    def burst(self) -> float: ...
    @property
    def max_keys(self) -> int: ...
    @property
    def idle_ttl(self) -> float | None: ...
    @property
    def clock(self) -> Any: ...

@final
class KeyedLimit:
    """A keyed limiter applied with one key function (what `@keyed(key=...)` wraps with)."""

    def __new__(
        cls,
        limiter: KeyedRateLimiter,
        key: Callable[..., object],
        on_limit: str = "wait",
    ) -> KeyedLimit: ...
    @property
    def limiter(self) -> KeyedRateLimiter: ...

@final
class KeyedLimitedCall:
    """A sync function limited per key (see `KeyedRateLimiter.__call__`)."""

    def __new__(
        cls, func: Callable[..., Any], engine: KeyedLimit
    ) -> KeyedLimitedCall: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...
    @property
    def keyed_limit(self) -> KeyedLimit: ...

@final
class Coroutine:
    """An awaited call of a riprap-decorated coroutine function (made by the `*AsyncCall`s).

    It drives the function's own coroutine and does the primitive's work around it: admission
    when first resumed, bookkeeping when it ends. A `collections.abc.Coroutine`.
    """

    def __await__(self) -> Self: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any) -> Any:
        """Resumes with `value`: what the coroutine yields next, or `StopIteration(result)`."""
    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        """Raises an exception inside the coroutine (how a task's cancellation arrives)."""
    def close(self) -> None:
        """Stops the coroutine: `GeneratorExit` is thrown in, and must not be swallowed."""
    @property
    def __name__(self) -> str: ...
    @property
    def __qualname__(self) -> str: ...
