"""Reference twin of `rust/core/src/adaptive.rs` and `rust/py/src/adaptive.rs`.

Backoff stretched or shrunk by each operation's success rate over its last 100 results.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

from .._fork import track
from .._validate import text
from ._backoff import Backoff, backoff_config
from ._backoff import attempt as _attempt

__all__ = ["AdaptiveBackoff", "adaptive_factor"]

HISTORY = 100
MAX_OPERATIONS = 10_000
DEFAULT_SUCCESS_RATE = 0.8


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
        cfg = backoff_config(
            strategy=strategy,
            base_delay=base_delay,
            max_delay=max_delay,
            exponential_base=exponential_base,
            jitter=jitter,
            jitter_range=jitter_range,
        )
        self._backoff = Backoff(cfg, seed)
        self._after_fork()
        track(self)

    def _after_fork(self) -> None:
        """No history (a forked child starts with none)."""
        self._ops: OrderedDict[str, deque[bool]] = OrderedDict()
        self._lock = threading.Lock()

    def success_rate(self, operation_id: str) -> float:
        """The success rate over the last 100 results (0.8 with none)."""
        text("operation_id", operation_id)
        with self._lock:
            h = self._ops.get(operation_id)
            if not h:
                return DEFAULT_SUCCESS_RATE
            return sum(h) / len(h)

    def record(self, operation_id: str, success: bool) -> None:
        """Records one result, forgetting the oldest operation id past 10,000."""
        text("operation_id", operation_id)
        with self._lock:
            h = self._ops.get(operation_id)
            if h is None:
                if len(self._ops) >= MAX_OPERATIONS:
                    self._ops.popitem(last=False)
                h = self._ops[operation_id] = deque(maxlen=HISTORY)
            h.append(bool(success))

    def delay(self, operation_id: str, attempt: object) -> float:
        """The delay after failed attempt `attempt` of `operation_id`."""
        text("operation_id", operation_id)
        n = _attempt(attempt)
        factor = adaptive_factor(self.success_rate(operation_id))
        return self._backoff.delay_scaled(n, None, factor)

    def __len__(self) -> int:
        return len(self._ops)
