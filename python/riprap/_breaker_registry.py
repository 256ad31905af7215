"""Named circuit breakers: the registry, the `circuit_breaker` decorator, the monitor.

`circuit_breaker_registry` is the process-wide registry. `riprap.circuit_breaker(name, ...)` and
`CircuitBreakerDecorator(name, config)` guard functions with the registry's breaker of that name,
so every function decorated with one name shares one breaker. `CircuitBreakerMonitor` turns the
breakers' stats into alerts and dashboard data.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from . import _fork, _registry
from ._breaker import CircuitBreaker, CircuitBreakerConfig
from ._stats import CircuitBreakerStats

__all__ = [
    "CircuitBreakerDecorator",
    "CircuitBreakerMonitor",
    "CircuitBreakerRegistry",
    "circuit_breaker",
    "circuit_breaker_registry",
]

F = TypeVar("F", bound=Callable[..., Any])


class CircuitBreakerRegistry:
    """Breakers by name: one breaker per name, created on first use. Thread-safe.

    Attributes:
        breakers: The breakers by name (read it; create breakers with `get_breaker`).
        default_config: The config of breakers created without one.
    """

    def __init__(self, default_config: CircuitBreakerConfig | None = None) -> None:
        self.breakers: dict[str, CircuitBreaker] = {}
        self.default_config = default_config or CircuitBreakerConfig()
        self._after_fork()
        _fork.track(self)

    def _after_fork(self) -> None:
        # A forked child keeps the registered breakers (each starts fresh on its own).
        self._lock = threading.Lock()

    def get_breaker(
        self,
        name: str,
        config: CircuitBreakerConfig | None = None,
        *,
        clock: object = None,
    ) -> CircuitBreaker:
        """The breaker called `name`, created with `config` (or `default_config`) if new.

        Asking again for an existing name returns the same breaker. A `config` that differs
        from the existing breaker's raises ValueError rather than being silently ignored;
        `config=None` accepts whatever the breaker has. `clock` applies only when the breaker is
        created.
        """
        with self._lock:
            breaker = self.breakers.get(name)
            if breaker is None:
                breaker = CircuitBreaker(
                    name, config or self.default_config, clock=clock
                )
                self.breakers[name] = breaker
            elif config is not None and config != breaker.config:
                raise ValueError(
                    f"circuit breaker {name!r} already exists with a different config: "
                    f"{breaker.config!r}"
                )
            return breaker

    def get_all_stats(self) -> dict[str, CircuitBreakerStats]:
        """`get_stats()` of every breaker, by name."""
        with self._lock:
            breakers = list(self.breakers.values())
        return {b.name: b.get_stats() for b in breakers}

    def reset_all(self) -> None:
        """Resets every breaker."""
        with self._lock:
            breakers = list(self.breakers.values())
        for b in breakers:
            b.reset()

    def __len__(self) -> int:
        return len(self.breakers)

    def __contains__(self, name: object) -> bool:
        return name in self.breakers


#: The process-wide registry used by `riprap.circuit_breaker` and `CircuitBreakerDecorator`.
circuit_breaker_registry = CircuitBreakerRegistry()


class CircuitBreakerDecorator:
    """Guard functions with the registry's breaker called `name` (the seed's spelling).

    The breaker is looked up (or created) when a function is decorated, so every function
    decorated with one name shares one breaker; the wrapper is the breaker's own (native on sync
    functions, a coroutine function on async ones).

    Args:
        name: The breaker's name in the registry.
        config: Its config, if it is created here (see `CircuitBreakerRegistry.get_breaker`).
        clock: A ManualClock, if it is created here.
        registry: The registry (default `circuit_breaker_registry`).
    """

    def __init__(
        self,
        name: str,
        config: CircuitBreakerConfig | None = None,
        *,
        clock: object = None,
        registry: CircuitBreakerRegistry | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self.registry = registry if registry is not None else circuit_breaker_registry

    @property
    def breaker(self) -> CircuitBreaker:
        """The registry's breaker for this name."""
        return self.registry.get_breaker(self.name, self.config, clock=self.clock)

    def __call__(self, func: F) -> F:
        return self.breaker(func)


def circuit_breaker(
    name: str,
    config: CircuitBreakerConfig | None = None,
    *,
    clock: object = None,
    registry: CircuitBreakerRegistry | None = None,
    **fields: Any,
) -> CircuitBreakerDecorator:
    """Guard a function with the registry's breaker called `name`.

    Examples:
        `@riprap.circuit_breaker("payments", failure_threshold=3, timeout=30.0)`, or
        `@riprap.circuit_breaker("payments", config)`. Fields given with a config override its
        values.

    Args:
        name: The breaker's name in the registry.
        config: A `CircuitBreakerConfig` (default: the registry's default config).
        clock: A `riprap.testing.ManualClock`, used if the breaker is created here.
        registry: The registry (default `circuit_breaker_registry`).
        **fields: `CircuitBreakerConfig` fields.
    """
    if config is not None and not isinstance(config, CircuitBreakerConfig):
        raise TypeError(
            f"config must be a CircuitBreakerConfig, got {type(config).__name__}"
        )
    if fields:
        reg = registry if registry is not None else circuit_breaker_registry
        config = dataclasses.replace(config or reg.default_config, **fields)
    return CircuitBreakerDecorator(name, config, clock=clock, registry=registry)


class CircuitBreakerMonitor:
    """Alerts and dashboard data for a set of breakers.

    Args:
        registry: Whose breakers to watch. None watches every live breaker in the process,
            whether made by a registry or constructed directly (a breaker whose name another
            live breaker had first is shown as `name#2`, `name#3`, ..., the label it keeps in
            the metrics for its whole life).

    Attributes:
        alert_thresholds: `failure_rate` (0.3): alert when a breaker's window failure rate
            exceeds it; `open_duration` (300 s): alert when a breaker has been out of CLOSED
            (open, or half-open between re-opens) for longer, measured from the moment it
            opened on the breaker's clock (the seed measured time since the last failure).
    """

    def __init__(self, registry: CircuitBreakerRegistry | None = None) -> None:
        self.registry = registry
        self.alert_thresholds: dict[str, float] = {
            "failure_rate": 0.3,
            "open_duration": 300,
        }

    def _all_stats(self) -> dict[str, CircuitBreakerStats]:
        if self.registry is not None:
            return self.registry.get_all_stats()
        return {
            label: breaker.get_stats()
            for label, breaker in _registry.live(_registry.BREAKER)
        }

    def _alerts(
        self, all_stats: dict[str, CircuitBreakerStats]
    ) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        limit_open = self.alert_thresholds["open_duration"]
        limit_rate = self.alert_thresholds["failure_rate"]
        for name, stats in all_stats.items():
            duration = stats.get("open_duration", 0.0)
            if stats["state"] != "closed" and duration > limit_open:
                alerts.append(
                    {
                        "type": "circuit_breaker_open",
                        "severity": "warning",
                        "circuit_breaker": name,
                        "message": (
                            f"Circuit breaker '{name}' has been open for "
                            f"{duration:.1f} seconds"
                        ),
                        "state": stats["state"],
                        "duration": duration,
                        "threshold": limit_open,
                    }
                )
            rate = stats.get("failure_rate", 0.0)
            if rate > limit_rate:
                alerts.append(
                    {
                        "type": "high_failure_rate",
                        "severity": "warning",
                        "circuit_breaker": name,
                        "message": (
                            f"High failure rate for circuit breaker '{name}': {rate:.2%}"
                        ),
                        "failure_rate": rate,
                        "threshold": limit_rate,
                    }
                )
        return alerts

    async def monitor_circuit_breakers(self) -> list[dict[str, Any]]:
        """Alerts, one dict per concerning condition.

        Each has `type` ("circuit_breaker_open" or "high_failure_rate"), `severity`,
        `circuit_breaker` (the name), `message`, the measured value and the `threshold`.
        """
        return self._alerts(self._all_stats())

    async def get_dashboard_data(self) -> dict[str, Any]:
        """Data for a dashboard, from one stats snapshot.

        Keys: `summary` (`total_breakers`, `open_breakers`, `half_open_breakers`,
        `closed_breakers`, `avg_failure_rate`), `breakers` (stats by name), `alerts`, and
        `timestamp` (wall time, `time.time()`).
        """
        return self._dashboard(self._all_stats())

    def _dashboard(self, all_stats: dict[str, CircuitBreakerStats]) -> dict[str, Any]:
        """What `get_dashboard_data()` returns, from stats already read (by label)."""
        total = len(all_stats)
        states = [s["state"] for s in all_stats.values()]
        open_count = states.count("open")
        half_open = states.count("half_open")
        return {
            "summary": {
                "total_breakers": total,
                "open_breakers": open_count,
                "half_open_breakers": half_open,
                "closed_breakers": total - open_count - half_open,
                "avg_failure_rate": sum(
                    s.get("failure_rate", 0.0) for s in all_stats.values()
                )
                / max(total, 1),
            },
            "breakers": all_stats,
            "alerts": self._alerts(all_stats),
            "timestamp": time.time(),
        }
