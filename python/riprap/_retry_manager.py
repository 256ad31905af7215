"""Retry managers: per-operation statistics, adaptive backoff and a learning strategy picker.

`RetryManager` is the seed's async API (`await manager.retry_with_backoff(func, ...)`) with
honest statistics: O(1) aggregates per operation over every call, not a list per call that the
next call overwrites. `AdaptiveBackoffStrategy` scales delays by an operation's recent success
rate. `IntelligentRetryManager` is a bandit over the three strategies that keeps exploring,
instead of the seed's "fastest so far", which never changes its first pick.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from . import _fork
from . import _validate as v
from ._backend import core
from ._clock import asleep_fn, check_clock, now_fn
from ._decorate import name_of
from ._retry import NETWORK_RETRY_POLICY, RetryPolicy, make_engine
from ._stats import RetryStatistics

__all__ = ["AdaptiveBackoffStrategy", "IntelligentRetryManager", "RetryManager"]

logger = logging.getLogger("riprap")


class _OperationStats:
    __slots__ = ("attempts", "calls", "max_time", "min_time", "successes", "total_time")

    def __init__(self) -> None:
        self.calls = 0
        self.successes = 0
        self.attempts = 0
        self.total_time = 0.0
        self.max_time = 0.0
        self.min_time = math.inf

    def attempt(self, seconds: float) -> None:
        self.attempts += 1
        self.total_time += seconds
        self.max_time = max(self.max_time, seconds)
        self.min_time = min(self.min_time, seconds)

    def as_dict(self) -> RetryStatistics:
        n = self.attempts
        return {
            "total_calls": self.calls,
            "successful_calls": self.successes,
            "total_attempts": n,
            "total_time": self.total_time,
            "average_attempt_time": self.total_time / n if n else 0.0,
            "max_attempt_time": self.max_time,
            "min_attempt_time": self.min_time if n else 0.0,
            "success_rate": self.successes / self.calls if self.calls else 0.0,
        }


async def _call(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


class RetryManager:
    """Runs sync or async functions under a retry policy and keeps statistics per operation.

    Statistics are aggregates (count, sum, min, max), so memory is O(1) per operation id however
    many calls it sees; `success_rate` is the fraction of calls that finally succeeded and
    `total_time` sums attempt durations (sleeps excluded), on the manager's clock. Sync functions
    run on the event loop's thread (as in the seed); give it async functions for I/O.

    An `operation_id` is a `str` (default: the function's qualified name). Ids name operations
    in log lines and statistics, so other types are refused (`TypeError`) rather than converted:
    `5` and `"5"` would otherwise be two operations that print the same. A str that cannot be
    written as UTF-8 (a lone surrogate) is refused with `ValueError`. A refused id registers
    nothing.

    Args:
        policy: The policy (default `RetryPolicy()`).
        clock: A `riprap.testing.ManualClock` (default: real time).
    """

    def __init__(
        self, policy: RetryPolicy | None = None, *, clock: object = None
    ) -> None:
        if policy is None:
            policy = RetryPolicy()
        elif not isinstance(policy, RetryPolicy):
            raise TypeError(
                f"policy must be a RetryPolicy, got {type(policy).__name__}"
            )
        self.policy = policy
        self.clock = check_clock(clock)
        self._now = now_fn(self.clock)
        self._asleep = asleep_fn(self.clock)
        self._after_fork()
        _fork.track(self)

    def _after_fork(self) -> None:
        """No statistics (a forked child starts with none)."""
        self._ops: dict[str, tuple[_OperationStats, core.RetryEngine]] = {}
        self._lock = threading.Lock()

    def _operation(self, operation_id: str) -> tuple[_OperationStats, core.RetryEngine]:
        with self._lock:
            op = self._ops.get(operation_id)
            if op is None:
                # Built before anything is registered: if building fails, the manager is
                # exactly as it was.
                engine = make_engine(self.policy, self.clock, None, operation_id)
                op = self._ops[operation_id] = (_OperationStats(), engine)
            return op

    async def retry_with_backoff(
        self,
        func: Callable[..., Any],
        *args: Any,
        operation_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call `func(*args, **kwargs)` (awaiting it if async) until it succeeds or retries run out.

        Returns:
            The function's result.

        Raises:
            The function's own last exception when it is not retryable or retries run out.
        """
        op = (
            v.text("operation_id", operation_id)
            if operation_id is not None
            else name_of(func)
        )
        stats, engine = self._operation(op)
        start = engine.start()
        now = self._now
        attempt, previous = 1, None
        while True:
            t0 = now()
            try:
                result = await _call(func, args, kwargs)
            except Exception as exc:
                self._attempt_done(stats, now() - t0)
                delay = engine.decide(attempt, exc, start, previous)
                if delay is None:
                    self._call_done(stats, success=False)
                    raise
            else:
                self._attempt_done(stats, now() - t0)
                if not engine.retry_result(result):
                    engine.succeeded(attempt, start)
                    self._call_done(stats, success=True)
                    return result
                delay = engine.decide(attempt, None, start, previous)
                if delay is None:
                    self._call_done(stats, success=True)
                    return result
            if delay > 0.0:
                await self._asleep(delay)
            attempt, previous = attempt + 1, delay

    def _attempt_done(self, stats: _OperationStats, seconds: float) -> None:
        with self._lock:
            stats.attempt(seconds)

    def _call_done(self, stats: _OperationStats, *, success: bool) -> None:
        with self._lock:
            stats.calls += 1
            stats.successes += success

    def get_retry_statistics(
        self, operation_id: str
    ) -> RetryStatistics | dict[str, Any]:
        """Aggregates over every call of `operation_id` (`{}` if it never ran).

        Keys: `total_attempts`, `total_time`, `average_attempt_time`, `max_attempt_time`,
        `min_attempt_time`, `success_rate`, plus `total_calls` and `successful_calls`.
        """
        v.text("operation_id", operation_id)
        with self._lock:
            op = self._ops.get(operation_id)
            return op[0].as_dict() if op is not None else {}

    def operations(self) -> list[str]:
        """Operation ids seen so far."""
        with self._lock:
            return list(self._ops)


class AdaptiveBackoffStrategy:
    """Backoff that adapts to each operation's success rate over its last 100 results.

    Success rate above 0.9 multiplies the delay by 0.7, above 0.7 by 1.0, above 0.5 by 1.5,
    otherwise by 2.0 (0.8 is assumed with no history). The factor is applied before `max_delay`
    and the policy's jitter after it. At most 10,000 operation ids are remembered (oldest
    forgotten first). Operation ids are `str`s, as for `RetryManager` (`TypeError` otherwise,
    `ValueError` for a lone surrogate).

    Args:
        initial_policy: The base policy (default `RetryPolicy()`).
    """

    adaptation_window = 100

    def __init__(self, initial_policy: RetryPolicy | None = None) -> None:
        if initial_policy is None:
            initial_policy = RetryPolicy()
        elif not isinstance(initial_policy, RetryPolicy):
            raise TypeError(
                f"initial_policy must be a RetryPolicy, got {type(initial_policy).__name__}"
            )
        p = initial_policy
        self.base_policy = p
        self._core = core.AdaptiveBackoff(
            strategy=p.backoff_strategy,
            base_delay=p.base_delay,
            max_delay=p.max_delay,
            exponential_base=p.exponential_base,
            jitter=p.jitter,
            jitter_range=p.jitter_range,
            seed=p.seed,
        )

    def calculate_adaptive_delay(self, operation_id: str, attempt: int) -> float:
        """The delay after failed attempt `attempt` of `operation_id`."""
        return self._core.delay(operation_id, attempt)

    def record_operation_result(self, operation_id: str, success: bool) -> None:
        """Records whether a call of `operation_id` finally succeeded."""
        self._core.record(operation_id, bool(success))

    def success_rate(self, operation_id: str) -> float:
        """Success rate over the last 100 results of `operation_id` (0.8 with none)."""
        return self._core.success_rate(operation_id)


class IntelligentRetryManager:
    """Learns which retry strategy serves each operation type best, and keeps checking.

    Strategies: "exponential" (`NETWORK_RETRY_POLICY`), "linear" (`RetryPolicy` with linear
    backoff) and "adaptive" (`AdaptiveBackoffStrategy(NETWORK_RETRY_POLICY)`). The first call of an
    operation type uses the seed's mapping (network: exponential, database: linear, api: adaptive,
    anything else: exponential). From the second call on it is a UCB1 bandit: each strategy not yet
    tried is tried once, then the pick maximises

        success_rate - time_weight x avg_time / slowest_avg_time + exploration x sqrt(2 ln N / n)

    so a strategy that fails or is slow is picked less, but never abandoned: the exploration term
    grows for strategies that have not been tried lately. Times are on the manager's clock.

    Args:
        clock: A `riprap.testing.ManualClock` (default: real time).
        exploration: Weight of the exploration bonus (0 disables exploring once all are tried).
        time_weight: How much slowness costs relative to failure.

    Attributes:
        performance_metrics: `[operation_type][strategy]` -> `total_time`, `total_operations`,
            `successful_operations`, `avg_time`, `success_rate`.
    """

    STRATEGIES: ClassVar[tuple[str, ...]] = ("exponential", "linear", "adaptive")
    DEFAULT_MAPPING: ClassVar[Mapping[str, str]] = {
        "network": "exponential",
        "database": "linear",
        "api": "adaptive",
        "default": "exponential",
    }

    def __init__(
        self,
        *,
        clock: object = None,
        exploration: float = 0.5,
        time_weight: float = 0.25,
    ) -> None:
        self.clock = check_clock(clock)
        self._now = now_fn(self.clock)
        self.exploration = float(exploration)
        self.time_weight = float(time_weight)
        if not (math.isfinite(self.exploration) and self.exploration >= 0):
            raise ValueError(
                f"exploration must be a finite number >= 0, got {exploration!r}"
            )
        if not (math.isfinite(self.time_weight) and self.time_weight >= 0):
            raise ValueError(
                f"time_weight must be a finite number >= 0, got {time_weight!r}"
            )
        self.adaptive = AdaptiveBackoffStrategy(NETWORK_RETRY_POLICY)
        self.strategies: dict[str, Any] = {
            "exponential": RetryManager(NETWORK_RETRY_POLICY, clock=self.clock),
            "linear": RetryManager(
                RetryPolicy(backoff_strategy="linear"), clock=self.clock
            ),
            "adaptive": self.adaptive,
        }
        self._asleep = asleep_fn(self.clock)
        self._after_fork()
        _fork.track(self)

    def _after_fork(self) -> None:
        """No metrics (a forked child starts with none)."""
        self.performance_metrics: dict[str, dict[str, dict[str, float]]] = {}
        self._lock = threading.Lock()

    def select_strategy(self, operation_type: str) -> str:
        """The strategy the next call of `operation_type` will use."""
        with self._lock:
            metrics = self.performance_metrics.get(operation_type)
            if not metrics:
                return self.DEFAULT_MAPPING.get(operation_type, "exponential")
            for name in self.STRATEGIES:
                if name not in metrics:
                    return name
            total = sum(m["total_operations"] for m in metrics.values())
            slowest = max(m["avg_time"] for m in metrics.values())

            def score(name: str) -> float:
                m = metrics[name]
                speed = m["avg_time"] / slowest if slowest > 0 else 0.0
                bonus = math.sqrt(2.0 * math.log(total) / m["total_operations"])
                return (
                    m["success_rate"]
                    - self.time_weight * speed
                    + self.exploration * bonus
                )

            return max(self.STRATEGIES, key=score)

    async def smart_retry(
        self,
        func: Callable[..., Any],
        *args: Any,
        operation_type: str = "default",
        **kwargs: Any,
    ) -> Any:
        """Run `func` under the strategy picked for `operation_type`, and learn from the outcome."""
        name = self.select_strategy(operation_type)
        operation_id = f"{operation_type}_{getattr(func, '__name__', 'call')}"
        t0 = self._now()
        try:
            if name == "adaptive":
                result = await self._adaptive_retry(func, operation_id, args, kwargs)
            else:
                manager: RetryManager = self.strategies[name]
                result = await manager.retry_with_backoff(
                    func, *args, operation_id=operation_id, **kwargs
                )
        except Exception:
            self._record(operation_type, name, self._now() - t0, success=False)
            raise
        self._record(operation_type, name, self._now() - t0, success=True)
        return result

    async def _adaptive_retry(
        self,
        func: Callable[..., Any],
        operation_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        policy = self.adaptive.base_policy
        attempt = 1
        while True:
            try:
                result = await _call(func, args, kwargs)
            except Exception as exc:
                if not policy.is_retryable(exc) or attempt >= policy.max_attempts:
                    self.adaptive.record_operation_result(operation_id, False)
                    raise
                delay = self.adaptive.calculate_adaptive_delay(operation_id, attempt)
                logger.warning(
                    "%s: attempt %d of %d failed (%s: %s); adaptive retry in %.3fs",
                    operation_id,
                    attempt,
                    policy.max_attempts,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                if delay > 0.0:
                    await self._asleep(delay)
                attempt += 1
                continue
            self.adaptive.record_operation_result(operation_id, True)
            return result

    def _record(
        self, operation_type: str, strategy: str, seconds: float, *, success: bool
    ) -> None:
        with self._lock:
            per_type = self.performance_metrics.setdefault(operation_type, {})
            m = per_type.setdefault(
                strategy,
                {
                    "total_time": 0.0,
                    "total_operations": 0,
                    "successful_operations": 0,
                    "avg_time": 0.0,
                    "success_rate": 0.0,
                },
            )
            m["total_time"] += seconds
            m["total_operations"] += 1
            m["successful_operations"] += success
            m["avg_time"] = m["total_time"] / m["total_operations"]
            m["success_rate"] = m["successful_operations"] / m["total_operations"]
