"""How the Python layer reads time and waits, for a primitive's `clock=`.

`None` means the monotonic clock the core uses (so times measured here and in Rust share an
origin), `time.sleep` and `asyncio.sleep`. A `ManualClock` is read and advanced instead, so
nothing really sleeps in tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ._backend import core

__all__ = ["asleep_fn", "check_clock", "now_fn"]


def check_clock(clock: object) -> Any:
    """`clock` if it is `None` or a ManualClock of the active backend, else `TypeError`."""
    if clock is None or isinstance(clock, core.ManualClock):
        return clock
    raise TypeError(
        f"clock must be a riprap.testing.ManualClock or None, got {type(clock).__name__}"
    )


def now_fn(clock: Any) -> Callable[[], float]:
    """The clock's `now()` in seconds."""
    return clock.now if clock is not None else core.monotonic


def asleep_fn(clock: Any) -> Callable[[float], Awaitable[object]]:
    """Async sleep on the clock (a ManualClock just advances)."""
    if clock is None:
        return asyncio.sleep
    asleep = getattr(clock, "asleep", None)
    if asleep is not None:
        return asleep  # type: ignore[no-any-return]

    async def advance(seconds: float) -> None:
        clock.sleep(seconds)

    return advance
