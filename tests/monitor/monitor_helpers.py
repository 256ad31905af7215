"""Fake primitives of the kinds whose real classes the monitor does not depend on.

They stand for the bulkhead, the fallback strategy, the result cache and the dead-letter queue:
objects that register under those kinds and return the stats shape the monitor documents. Tests
that use them are contract tests of the monitor (what it reads from a kind), not tests of those
primitives.
"""

from __future__ import annotations

from typing import Any

from riprap import _registry

__all__ = ["FakePrimitive", "fake_bulkhead"]


class FakePrimitive:
    """Registers under `kind` and returns `stats` (updated by the test) from `get_stats()`."""

    def __init__(self, kind: str, label: str | None, **stats: Any) -> None:
        self.name = label
        self.stats = {"name": label, **stats}
        self.label = _registry.track(kind, self)

    def get_stats(self) -> dict[str, Any]:
        return dict(self.stats)


def fake_bulkhead(name: str, active: int, limit: int, **more: Any) -> FakePrimitive:
    """A bulkhead's documented stats: `active` of `limit` slots in use."""
    stats: dict[str, Any] = {
        "active_calls": active,
        "queued_calls": 0,
        "rejected_calls": 0,
        "total_calls": 0,
        "rejection_rate": 0.0,
        "utilization": active / limit,
        "config": {"max_concurrent": limit, "max_queue_size": 10, "timeout": 30.0},
        "current_limit": limit,
    }
    stats.update(more)
    return FakePrimitive(_registry.BULKHEAD, name, **stats)
