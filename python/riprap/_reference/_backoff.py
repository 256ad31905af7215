"""Reference twin of `rust/core/src/backoff.rs`, `retry.rs` and `adaptive.rs`.

The arithmetic is written operation for operation like the Rust core, so the same seed gives
bit-identical delays on both backends (a differential test checks 10,000 random cases).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from typing import NamedTuple

from .._fork import track
from .._validate import check_float, check_int, integer, py_float
from ._rng import Rng

__all__ = [
    "AdaptiveBackoff",
    "RetrySchedule",
    "adaptive_factor",
    "pow_saturating",
]

STRATEGIES = ("exponential", "linear", "fixed", "decorrelated", "full_jitter")
HISTORY = 100
MAX_OPERATIONS = 10_000
DEFAULT_SUCCESS_RATE = 0.8
_U64_MAX = (1 << 64) - 1


def pow_saturating(b: float, e: int) -> float:
    """`b ** e` by square-and-multiply, saturating to inf (never OverflowError)."""
    acc = 1.0
    while e > 0:
        if e & 1:
            acc *= b
        e >>= 1
        if e > 0:
            b *= b
    return acc


class _Config(NamedTuple):
    strategy: str
    base_delay: float
    max_delay: float
    exponential_base: float
    jitter: bool
    jitter_range: float


def _config(
    *,
    strategy: str,
    base_delay: float,
    max_delay: float,
    exponential_base: float,
    jitter: bool,
    jitter_range: float,
) -> _Config:
    if strategy not in STRATEGIES:
        names = ", ".join(f"'{s}'" for s in STRATEGIES)
        raise ValueError(f"backoff_strategy must be one of {names}, got '{strategy}'")
    check_float("base_delay", base_delay, 0.0, True)
    check_float("max_delay", max_delay, 0.0, True)
    check_float("exponential_base", exponential_base, 1.0, True)
    check_float("jitter_range", jitter_range, 0.0, True)
    if jitter_range > 1.0:
        raise ValueError(f"jitter_range must be <= 1.0, got {py_float(jitter_range)}")
    if base_delay > max_delay:
        raise ValueError(
            f"base_delay ({py_float(base_delay)}) must be <= max_delay ({py_float(max_delay)})"
        )
    return _Config(
        strategy, base_delay, max_delay, exponential_base, jitter, jitter_range
    )


def _attempt(value: object) -> int:
    n = integer("attempt", value)
    if n < 0:
        raise ValueError(f"attempt must be >= 0, got {n}")
    if n == 0:
        raise ValueError("attempt must be >= 1, got 0")
    return min(n, _U64_MAX)


class _Backoff:
    def __init__(self, cfg: _Config, seed: int | None) -> None:
        self.cfg = cfg
        self.rng = Rng(seed)

    def raw(self, attempt: int) -> float:
        c = self.cfg
        n = max(attempt, 1)
        if c.strategy in ("exponential", "full_jitter"):
            if c.base_delay == 0.0:
                return 0.0
            return c.base_delay * pow_saturating(c.exponential_base, n - 1)
        if c.strategy == "linear":
            return c.base_delay * float(n)
        return c.base_delay

    def delay_scaled(
        self, attempt: int, previous: float | None, factor: float
    ) -> float:
        c = self.cfg
        if c.strategy == "decorrelated":
            if previous is not None and math.isfinite(previous):
                prev = max(min(previous, c.max_delay), c.base_delay)
            else:
                prev = c.base_delay
            hi = max(prev * 3.0, c.base_delay)
            d = c.base_delay + (hi - c.base_delay) * self.rng.next_f64()
            return min(d * factor, c.max_delay)
        capped = min(self.raw(attempt) * factor, c.max_delay)
        if c.strategy == "full_jitter":
            return capped * self.rng.next_f64()
        if c.jitter:
            u = self.rng.next_f64()
            return max(capped + capped * c.jitter_range * (2.0 * u - 1.0), 0.0)
        return capped


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
        cfg = _config(
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
        self._backoff = _Backoff(cfg, seed)
        self._max_attempts = min(max_attempts, _U64_MAX)
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

    @property
    def max_attempts(self) -> int:
        """Total attempts allowed."""
        return self._max_attempts

    @property
    def deadline(self) -> float | None:
        """The deadline in seconds, if any."""
        return self._deadline


def adaptive_factor(success_rate: float) -> float:
    """The seed's delay factor for a success rate ("above" is strict)."""
    if success_rate > 0.9:
        return 0.7
    if success_rate > 0.7:
        return 1.0
    if success_rate > 0.5:
        return 1.5
    return 2.0


class AdaptiveBackoff:
    """Backoff stretched or shrunk by each operation's recent success rate."""

    def __init__(
        self,
        *,
        strategy: str,
        base_delay: float,
        max_delay: float,
        exponential_base: float,
        jitter: bool,
        jitter_range: float,
        seed: int | None,
    ) -> None:
        cfg = _config(
            strategy=strategy,
            base_delay=base_delay,
            max_delay=max_delay,
            exponential_base=exponential_base,
            jitter=jitter,
            jitter_range=jitter_range,
        )
        self._backoff = _Backoff(cfg, seed)
        self._after_fork()
        track(self)

    def _after_fork(self) -> None:
        """No history (a forked child starts with none)."""
        self._ops: OrderedDict[str, deque[bool]] = OrderedDict()
        self._lock = threading.Lock()

    def success_rate(self, operation_id: str) -> float:
        """The success rate over the last 100 results (0.8 with none)."""
        with self._lock:
            h = self._ops.get(operation_id)
            if not h:
                return DEFAULT_SUCCESS_RATE
            return sum(h) / len(h)

    def record(self, operation_id: str, success: bool) -> None:
        """Records one result, forgetting the oldest operation id past 10,000."""
        with self._lock:
            h = self._ops.get(operation_id)
            if h is None:
                if len(self._ops) >= MAX_OPERATIONS:
                    self._ops.popitem(last=False)
                h = self._ops[operation_id] = deque(maxlen=HISTORY)
            h.append(bool(success))

    def delay(self, operation_id: str, attempt: object) -> float:
        """The delay after failed attempt `attempt` of `operation_id`."""
        n = _attempt(attempt)
        factor = adaptive_factor(self.success_rate(operation_id))
        return self._backoff.delay_scaled(n, None, factor)

    def __len__(self) -> int:
        return len(self._ops)
