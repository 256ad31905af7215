"""Reference twin of `rust/core/src/budget.rs`."""

from __future__ import annotations

import threading
from typing import Any

from .._fork import track
from .._validate import check_float, number, secs_to_nanos
from ._clock import clock_of

__all__ = ["RetryBudget"]

BUCKETS = 10


class RetryBudget:
    """Retries allowed <= ratio x first attempts in the window + min_per_second x window."""

    def __init__(
        self,
        ratio: object = None,
        min_per_second: object = None,
        window: object = None,
        *,
        clock: object = None,
    ) -> None:
        r = 0.2 if ratio is None else number("ratio", ratio)
        m = 3.0 if min_per_second is None else number("min_per_second", min_per_second)
        w = 10.0 if window is None else number("window", window)
        check_float("ratio", r, 0.0, True)
        check_float("min_per_second", m, 0.0, True)
        check_float("window", w, 0.0, False)
        self._ratio, self._min_per_second, self._window = r, m, w
        self._bucket_ns = max(secs_to_nanos(w) // BUCKETS, 1)
        self._clock = clock_of(clock)
        self._after_fork()
        track(self)

    def _after_fork(self) -> None:
        """An empty window and no totals: the start, and a forked child's start."""
        self._deposits = [0] * BUCKETS
        self._withdrawals = [0] * BUCKETS
        self._head = 0
        self._totals = [0, 0, 0]  # deposits, withdrawals, refused
        self._lock = threading.Lock()

    def _rotate(self) -> int:
        index = self._clock.now_ns() // self._bucket_ns
        if index > self._head:
            for k in range(1, min(index - self._head, BUCKETS) + 1):
                slot = (self._head + k) % BUCKETS
                self._deposits[slot] = 0
                self._withdrawals[slot] = 0
            self._head = index
        return self._head % BUCKETS

    def _allowance(self, deposits: int) -> float:
        return self._ratio * float(deposits) + self._min_per_second * self._window

    def deposit(self) -> None:
        """Records a first attempt."""
        with self._lock:
            self._deposits[self._rotate()] += 1
            self._totals[0] += 1

    def try_withdraw(self) -> bool:
        """Takes one retry from the budget; False means the retry must not be made."""
        with self._lock:
            slot = self._rotate()
            if float(sum(self._withdrawals) + 1) <= self._allowance(
                sum(self._deposits)
            ):
                self._withdrawals[slot] += 1
                self._totals[1] += 1
                return True
            self._totals[2] += 1
            return False

    @property
    def ratio(self) -> float:
        """Retries allowed per first attempt."""
        return self._ratio

    @property
    def min_per_second(self) -> float:
        """Retries per second allowed regardless of traffic."""
        return self._min_per_second

    @property
    def window(self) -> float:
        """The window in seconds."""
        return self._window

    def get_stats(self) -> dict[str, Any]:
        """Counters: the window's first attempts and retries, what is left, lifetime totals."""
        with self._lock:
            self._rotate()
            d, w = sum(self._deposits), sum(self._withdrawals)
            return {
                "ratio": self._ratio,
                "min_per_second": self._min_per_second,
                "window": self._window,
                "deposits": d,
                "withdrawals": w,
                "available": max(self._allowance(d) - float(w), 0.0),
                "total_deposits": self._totals[0],
                "total_withdrawals": self._totals[1],
                "total_refused": self._totals[2],
            }

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self._ratio}, min_per_second={self._min_per_second}, "
            f"window={self._window})"
        )
