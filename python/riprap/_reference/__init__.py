"""The pure-Python reference backend: a readable twin of `riprap._core`.

Same names, same signatures, same semantics, written for clarity rather than speed.
`RIPRAP_BACKEND=python` runs the whole library on it, and differential tests compare it with the
Rust core on random event sequences.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._adaptive import AdaptiveBackoff
from ._awaitable import Coroutine
from ._breaker import (
    BreakerAsyncCall,
    BreakerCall,
    BreakerConfig,
    BreakerEngine,
    BreakerPermit,
)
from ._budget import RetryBudget
from ._bulkhead import BulkheadConfig, BulkheadEngine, BulkheadPermit
from ._bulkhead_call import BulkheadAsyncCall, BulkheadCall
from ._clock import ManualClock, monotonic, real_sleeps
from ._keyed import KeyedLimit, KeyedLimitedCall, KeyedRateLimiter
from ._limiter import LimitedAsyncCall, LimitedCall, RateLimiter
from ._retry import RetryAsyncCall, RetryCall, RetryEngine, RetrySchedule
from ._retry_counters import RetryCounters
from ._rng import Rng, note_fork

try:
    __version__ = version("riprap")
except (
    PackageNotFoundError
):  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "AdaptiveBackoff",
    "BreakerAsyncCall",
    "BreakerCall",
    "BreakerConfig",
    "BreakerEngine",
    "BreakerPermit",
    "Coroutine",
    "KeyedLimit",
    "BulkheadAsyncCall",
    "BulkheadCall",
    "BulkheadConfig",
    "BulkheadEngine",
    "BulkheadPermit",
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
