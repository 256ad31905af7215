"""Named bulkheads: the manager, its seed defaults, and the `bulkhead` decorator.

`bulkhead_manager` is the process-wide manager. `riprap.bulkhead(name, ...)` and
`BulkheadDecorator(resource_type, config)` guard functions with the manager's bulkhead of that
name, so every function decorated with one name shares one bulkhead.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from . import _fork
from ._bulkhead import Bulkhead, BulkheadConfig

__all__ = [
    "DEFAULT_CONFIGS",
    "BulkheadDecorator",
    "BulkheadManager",
    "bulkhead",
    "bulkhead_manager",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The seed design's bulkheads per resource type.
DEFAULT_CONFIGS: dict[str, BulkheadConfig] = {
    "database": BulkheadConfig(max_concurrent_calls=20, timeout=10.0),
    "agent_communication": BulkheadConfig(max_concurrent_calls=50, timeout=30.0),
    "external_api": BulkheadConfig(max_concurrent_calls=10, timeout=60.0),
    "file_operations": BulkheadConfig(max_concurrent_calls=5, timeout=120.0),
}


class BulkheadManager:
    """Bulkheads by resource type: one bulkhead per name, created on first use. Thread-safe.

    Attributes:
        bulkheads: The bulkheads by name (read it; create them with `get_bulkhead`).
        default_configs: The config a new bulkhead of a known resource type gets ("database":
            20 concurrent calls, 10 s timeout; "agent_communication": 50, 30 s;
            "external_api": 10, 60 s; "file_operations": 5, 120 s). Any other name gets
            `BulkheadConfig()`.
    """

    def __init__(self) -> None:
        self.bulkheads: dict[str, Bulkhead] = {}
        self.default_configs: dict[str, BulkheadConfig] = dict(DEFAULT_CONFIGS)
        self._after_fork()
        _fork.track(self)

    def _after_fork(self) -> None:
        # A forked child keeps the bulkheads (each starts empty on its own).
        self._lock = threading.Lock()

    def default_config(self, resource_type: str) -> BulkheadConfig:
        """The config a new bulkhead called `resource_type` gets when none is given."""
        return self.default_configs.get(resource_type) or BulkheadConfig()

    def get_bulkhead(
        self,
        resource_type: str,
        config: BulkheadConfig | None = None,
        *,
        clock: object = None,
    ) -> Bulkhead:
        """The bulkhead called `resource_type`, created with `config` (or the default) if new.

        Asking again for an existing name returns the same bulkhead. A `config` that differs
        from the existing bulkhead's raises ValueError rather than being silently ignored;
        `config=None` accepts whatever the bulkhead has. `clock` applies only when the
        bulkhead is created.
        """
        with self._lock:
            bh = self.bulkheads.get(resource_type)
            if bh is None:
                bh = Bulkhead(
                    resource_type,
                    config or self.default_config(resource_type),
                    clock=clock,
                )
                self.bulkheads[resource_type] = bh
            elif config is not None and config != bh.config:
                raise ValueError(
                    f"bulkhead {resource_type!r} already exists with a different config: "
                    f"{bh.config!r}"
                )
            return bh

    async def execute_with_bulkhead(
        self, resource_type: str, func: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Any:
        """`await get_bulkhead(resource_type).execute(func, *args, **kwargs)`."""
        return await self.get_bulkhead(resource_type).execute(func, *args, **kwargs)

    def get_all_stats(self) -> dict[str, dict[str, Any]]:
        """`get_stats()` of every bulkhead, by name."""
        with self._lock:
            bulkheads = list(self.bulkheads.values())
        return {b.name: b.get_stats() for b in bulkheads}

    def __len__(self) -> int:
        return len(self.bulkheads)

    def __contains__(self, name: object) -> bool:
        return name in self.bulkheads


#: The process-wide manager used by `riprap.bulkhead` and `BulkheadDecorator`.
bulkhead_manager = BulkheadManager()


class BulkheadDecorator:
    """Guard functions with the manager's bulkhead called `resource_type` (the seed's spelling).

    The bulkhead is looked up (or created) when a function is decorated, so every function
    decorated with one name shares one bulkhead; the wrapper is the bulkhead's own (native on
    sync functions, a coroutine function on async ones).

    Args:
        resource_type: The bulkhead's name in the manager.
        config: Its config, if it is created here (see `BulkheadManager.get_bulkhead`).
        clock: A ManualClock, if it is created here.
        manager: The manager (default `bulkhead_manager`).
    """

    def __init__(
        self,
        resource_type: str,
        config: BulkheadConfig | None = None,
        *,
        clock: object = None,
        manager: BulkheadManager | None = None,
    ) -> None:
        self.resource_type = resource_type
        self.config = config
        self.clock = clock
        self.manager = manager if manager is not None else bulkhead_manager

    @property
    def bulkhead(self) -> Bulkhead:
        """The manager's bulkhead for this name."""
        return self.manager.get_bulkhead(
            self.resource_type, self.config, clock=self.clock
        )

    def __call__(self, func: F) -> F:
        return self.bulkhead(func)


def bulkhead(
    name: str,
    config: BulkheadConfig | None = None,
    *,
    clock: object = None,
    manager: BulkheadManager | None = None,
    **fields: Any,
) -> BulkheadDecorator:
    """Guard a function with the manager's bulkhead called `name`.

    Examples:
        `@riprap.bulkhead("database")` (the seed's defaults for known names),
        `@riprap.bulkhead("payments", max_concurrent_calls=4, max_wait=0.5)`, or
        `@riprap.bulkhead("payments", config)`. Fields given with a config override its values;
        fields alone override the manager's default for that name.

    Args:
        name: The bulkhead's name in the manager.
        config: A `BulkheadConfig` (default: the manager's default for `name`).
        clock: A `riprap.testing.ManualClock`, used if the bulkhead is created here.
        manager: The manager (default `bulkhead_manager`).
        **fields: `BulkheadConfig` fields.
    """
    if config is not None and not isinstance(config, BulkheadConfig):
        raise TypeError(f"config must be a BulkheadConfig, got {type(config).__name__}")
    if fields:
        m = manager if manager is not None else bulkhead_manager
        config = dataclasses.replace(config or m.default_config(name), **fields)
    return BulkheadDecorator(name, config, clock=clock, manager=manager)
