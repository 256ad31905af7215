"""Helpers shared by the bulkhead tests."""

from __future__ import annotations

import time
from typing import Any

from riprap import Bulkhead, BulkheadConfig
from riprap.testing import ManualClock


def wait_until(condition: Any, limit: float = 5.0) -> None:
    """Polls `condition` until it holds (another thread is on its way there)."""
    end = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < end, "timed out waiting for the condition"
        time.sleep(0.0005)


def bulkhead(
    n: int = 2, queue: int = 10, clock: ManualClock | None = None, **fields: Any
) -> Bulkhead:
    return Bulkhead(
        "svc",
        BulkheadConfig(max_concurrent_calls=n, max_queue_size=queue, **fields),
        clock=clock,
    )
