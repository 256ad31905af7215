"""The public surface: names, aliases, version, backend selection, reference mirrors core."""

from __future__ import annotations

import importlib.metadata
import inspect
import os

import pytest

import riprap
from riprap import _core, _reference

PUBLIC_NAMES_SO_FAR = {
    "API_RETRY_POLICY",
    "AdaptiveBackoffStrategy",
    "BulkheadRejectedError",
    "BulkheadRejectedException",
    "BulkheadTimeoutError",
    "BulkheadTimeoutException",
    "Bulkhead",
    "BulkheadConfig",
    "BulkheadDecorator",
    "BulkheadManager",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerDecorator",
    "CircuitBreakerMonitor",
    "CircuitBreakerOpenException",
    "CircuitBreakerRegistry",
    "CircuitOpenError",
    "CircuitState",
    "DATABASE_RETRY_POLICY",
    "DeadLetterError",
    "DeadLetterQueue",
    "FallbackConfig",
    "FallbackDecorator",
    "FallbackExhaustedError",
    "FallbackExhaustedException",
    "FallbackStrategy",
    "IntelligentRetryManager",
    "KeyedRateLimiter",
    "MISSING",
    "NETWORK_RETRY_POLICY",
    "RateLimitExceeded",
    "RateLimiter",
    "ResilienceError",
    "ResilienceMonitor",
    "ResourceBulkhead",
    "ResultCache",
    "RetryBudget",
    "RetryDecorator",
    "RetryManager",
    "RetryPolicy",
    "ServiceFallbackManager",
    "TimeoutExceededError",
    "backend",
    "bulkhead",
    "bulkhead_manager",
    "circuit_breaker",
    "circuit_breaker_registry",
    "deadline",
    "dead_letter",
    "fallback",
    "fallback_manager",
    "retry",
    "timeout",
}


def test_all_is_sorted_and_exported() -> None:
    assert riprap.__all__ == sorted(riprap.__all__)
    for name in riprap.__all__:
        assert hasattr(riprap, name), name
    assert PUBLIC_NAMES_SO_FAR <= set(riprap.__all__)


def test_missing_is_one_named_sentinel() -> None:
    import copy
    import pickle

    assert repr(riprap.MISSING) == "riprap.MISSING"
    assert riprap.MISSING is not None
    assert pickle.loads(pickle.dumps(riprap.MISSING)) is riprap.MISSING
    assert copy.deepcopy(riprap.MISSING) is riprap.MISSING


def test_dead_letter_error_is_a_resilience_error() -> None:
    import pickle

    err = riprap.DeadLetterError("/x.db", "dead-letter queue /x.db: disk full")
    assert isinstance(err, riprap.ResilienceError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, str(back)) == ("/x.db", str(err))


def test_seed_aliases_are_the_same_classes() -> None:
    assert riprap.ResourceBulkhead is riprap.Bulkhead
    assert riprap.CircuitBreakerOpenException is riprap.CircuitOpenError
    assert riprap.BulkheadRejectedException is riprap.BulkheadRejectedError
    assert riprap.BulkheadTimeoutException is riprap.BulkheadTimeoutError
    assert riprap.FallbackExhaustedException is riprap.FallbackExhaustedError


def test_version_matches_metadata_and_core() -> None:
    assert riprap.__version__ == importlib.metadata.version("riprap")
    assert _core.__version__ == riprap.__version__


def test_backend_follows_the_environment() -> None:
    expected = os.environ.get("RIPRAP_BACKEND", "rust") or "rust"
    assert riprap.backend() == expected
    core = _core if expected == "rust" else _reference
    assert riprap.RetryBudget is core.RetryBudget
    assert issubclass(riprap.RateLimiter, core.RateLimiter)
    assert issubclass(riprap.KeyedRateLimiter, core.KeyedRateLimiter)
    assert issubclass(riprap.Bulkhead, core.BulkheadEngine)
    assert issubclass(riprap.testing.ManualClock, core.ManualClock)


def test_unknown_backend_is_refused() -> None:
    import subprocess
    import sys

    env = dict(os.environ, RIPRAP_BACKEND="cobol")
    proc = subprocess.run(
        [sys.executable, "-c", "import riprap"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "RIPRAP_BACKEND must be 'rust' or 'python'" in proc.stderr


def _public(obj: object) -> set[str]:
    return {
        n
        for n in dir(obj)
        if not n.startswith("_") or n in ("__call__", "__get__", "__len__")
    }


# Made only by the engines (Rust has no constructor for them; the reference's are internal).
NOT_CONSTRUCTIBLE = {"BreakerPermit", "BulkheadPermit", "Coroutine"}


@pytest.mark.parametrize("name", [n for n in _core.__all__ if n != "__version__"])
def test_reference_mirrors_core(name: str) -> None:
    rust, ref = getattr(_core, name), getattr(_reference, name)
    if inspect.isclass(rust):
        if name not in NOT_CONSTRUCTIBLE:
            assert list(inspect.signature(rust).parameters) == list(
                inspect.signature(ref).parameters
            ), f"{name}()"
        missing = _public(rust) - _public(ref)
        assert not missing, f"{name}: reference lacks {missing}"
        for attr in _public(rust):
            r, p = getattr(rust, attr), getattr(ref, attr)
            if callable(r) and not isinstance(r, type):
                try:
                    rs = inspect.signature(r)
                except (TypeError, ValueError):
                    continue
                ps = inspect.signature(p)
                assert list(rs.parameters) == list(ps.parameters), f"{name}.{attr}"
    else:
        assert list(inspect.signature(rust).parameters) == list(
            inspect.signature(ref).parameters
        )


def test_riprap_logger_has_a_null_handler() -> None:
    import logging

    assert any(
        isinstance(h, logging.NullHandler) for h in logging.getLogger("riprap").handlers
    )
