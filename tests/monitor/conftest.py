"""Fixtures of the monitor tests: a registry of their own.

The registry of named primitives is process-wide, and other tests leave breakers alive (the
global `circuit_breaker_registry` holds every breaker made through it) and retry operations
counted. Each monitor test gets a fresh registry, so it sees exactly what it made.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from riprap import _registry


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A registry of this test's own (restored afterwards)."""
    monkeypatch.setattr(_registry, "_REGISTRY", _registry._Registry())
    return
