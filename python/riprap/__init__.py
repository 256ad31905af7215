"""riprap: resilience policies for Python with a Rust core.

Retry with backoff and jitter, retry budgets and adaptive backoff, and token-bucket rate limiters
(single and keyed), built on state machines written in Rust (`riprap._core`); a
`ResilienceMonitor` (health score, alerts, report) over every named primitive, Prometheus
metrics read at scrape time (`riprap.metrics.register()`) and `riprap serve` (a live dashboard).
`RIPRAP_BACKEND=python` runs everything on the pure-Python reference (`riprap._reference`)
instead; `riprap.backend()` says which one is active.

Deterministic tests: pass `clock=riprap.testing.ManualClock()` to any primitive.
"""

from importlib.metadata import version as _version

from . import _backend
from ._breaker import CircuitBreaker, CircuitBreakerConfig, CircuitState
from ._breaker_registry import (
    CircuitBreakerDecorator,
    CircuitBreakerMonitor,
    CircuitBreakerRegistry,
    circuit_breaker,
    circuit_breaker_registry,
)
from ._errors import (
    BulkheadRejectedError,
    BulkheadRejectedException,
    BulkheadTimeoutError,
    BulkheadTimeoutException,
    CircuitBreakerOpenException,
    CircuitOpenError,
    FallbackExhaustedError,
    FallbackExhaustedException,
    RateLimitExceeded,
    ResilienceError,
    TimeoutExceededError,
)
from ._limiter import KeyedRateLimiter, RateLimiter
from ._monitor import ResilienceMonitor
from ._retry import (
    API_RETRY_POLICY,
    DATABASE_RETRY_POLICY,
    NETWORK_RETRY_POLICY,
    RetryDecorator,
    RetryPolicy,
    retry,
)
from ._retry_manager import (
    AdaptiveBackoffStrategy,
    IntelligentRetryManager,
    RetryManager,
)
from ._stats import (
    CircuitBreakerStats,
    KeyedRateLimiterStats,
    RateLimiterStats,
    RetryBudgetStats,
    RetryCountersSnapshot,
    RetryStatistics,
)

RetryBudget = _backend.core.RetryBudget

__version__ = _version("riprap")


def backend() -> str:
    """The active backend: "rust" (default) or "python" (`RIPRAP_BACKEND=python`)."""
    return _backend.NAME


__all__ = [
    "API_RETRY_POLICY",
    "AdaptiveBackoffStrategy",
    "BulkheadRejectedError",
    "BulkheadRejectedException",
    "BulkheadTimeoutError",
    "BulkheadTimeoutException",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerDecorator",
    "CircuitBreakerMonitor",
    "CircuitBreakerOpenException",
    "CircuitBreakerRegistry",
    "CircuitBreakerStats",
    "CircuitOpenError",
    "CircuitState",
    "DATABASE_RETRY_POLICY",
    "FallbackExhaustedError",
    "FallbackExhaustedException",
    "IntelligentRetryManager",
    "KeyedRateLimiter",
    "KeyedRateLimiterStats",
    "NETWORK_RETRY_POLICY",
    "RateLimitExceeded",
    "RateLimiter",
    "RateLimiterStats",
    "ResilienceError",
    "ResilienceMonitor",
    "RetryBudget",
    "RetryBudgetStats",
    "RetryCountersSnapshot",
    "RetryDecorator",
    "RetryManager",
    "RetryPolicy",
    "RetryStatistics",
    "TimeoutExceededError",
    "__version__",
    "backend",
    "circuit_breaker",
    "circuit_breaker_registry",
    "retry",
]
