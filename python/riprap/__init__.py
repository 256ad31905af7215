"""riprap: resilience policies for Python with a Rust core.

Retry with backoff and jitter, retry budgets and adaptive backoff, circuit breakers, token-bucket
rate limiters (single and keyed), bulkheads, timeouts and deadlines, built on state machines
written in Rust (`riprap._core`); fallback chains with a bounded result cache, a durable
dead-letter queue on SQLite, pipelines that compose them; a `ResilienceMonitor` (health score,
alerts, report) over every named primitive, Prometheus metrics read at scrape time
(`riprap.metrics.register()`) and `riprap serve` (a live dashboard).
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
from ._bulkhead import Bulkhead, BulkheadConfig, ResourceBulkhead
from ._bulkhead_manager import (
    BulkheadDecorator,
    BulkheadManager,
    bulkhead,
    bulkhead_manager,
)
from ._cache import ResultCache
from ._dead_letter import dead_letter
from ._dlq import DeadLetterQueue
from ._errors import (
    BulkheadRejectedError,
    BulkheadRejectedException,
    BulkheadTimeoutError,
    BulkheadTimeoutException,
    CircuitBreakerOpenException,
    CircuitOpenError,
    DeadLetterError,
    FallbackExhaustedError,
    FallbackExhaustedException,
    RateLimitExceeded,
    ResilienceError,
    TimeoutExceededError,
)
from ._fallback import MISSING, FallbackConfig, FallbackStrategy
from ._fallback_manager import (
    FallbackDecorator,
    ServiceFallbackManager,
    fallback,
    fallback_manager,
)
from ._limiter import KeyedRateLimiter, RateLimiter
from ._monitor import ResilienceMonitor
from ._pipeline import Pipeline
from ._redis import RedisStorage
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
    DeadLetterQueueStats,
    FallbackStats,
    KeyedRateLimiterStats,
    RateLimiterStats,
    ResultCacheStats,
    RetryBudgetStats,
    RetryCountersSnapshot,
    RetryStatistics,
    SharedCircuitBreakerStats,
    SharedKeyedRateLimiterStats,
    SharedRateLimiterStats,
)
from ._timeout import deadline, timeout

RetryBudget = _backend.core.RetryBudget

__version__ = _version("riprap")


def backend() -> str:
    """The active backend: "rust" (default) or "python" (`RIPRAP_BACKEND=python`)."""
    return _backend.NAME


__all__ = [
    "API_RETRY_POLICY",
    "AdaptiveBackoffStrategy",
    "Bulkhead",
    "BulkheadConfig",
    "BulkheadDecorator",
    "BulkheadManager",
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
    "DeadLetterError",
    "DeadLetterQueue",
    "DeadLetterQueueStats",
    "FallbackConfig",
    "FallbackDecorator",
    "FallbackExhaustedError",
    "FallbackExhaustedException",
    "FallbackStats",
    "FallbackStrategy",
    "IntelligentRetryManager",
    "KeyedRateLimiter",
    "KeyedRateLimiterStats",
    "MISSING",
    "NETWORK_RETRY_POLICY",
    "Pipeline",
    "RateLimitExceeded",
    "RateLimiter",
    "RateLimiterStats",
    "RedisStorage",
    "ResilienceError",
    "ResilienceMonitor",
    "ResourceBulkhead",
    "ResultCache",
    "ResultCacheStats",
    "RetryBudget",
    "RetryBudgetStats",
    "RetryCountersSnapshot",
    "RetryDecorator",
    "RetryManager",
    "RetryPolicy",
    "RetryStatistics",
    "ServiceFallbackManager",
    "SharedCircuitBreakerStats",
    "SharedKeyedRateLimiterStats",
    "SharedRateLimiterStats",
    "TimeoutExceededError",
    "__version__",
    "backend",
    "bulkhead",
    "bulkhead_manager",
    "circuit_breaker",
    "circuit_breaker_registry",
    "dead_letter",
    "deadline",
    "fallback",
    "fallback_manager",
    "retry",
    "timeout",
]
