"""Deterministic testing: a manual clock for every primitive (`clock=`).

Example:
    >>> from riprap.testing import ManualClock
    >>> clock = ManualClock()
    >>> clock.advance(2.5)
    >>> clock.now()
    2.5
"""

from __future__ import annotations

from ._backend import core

__all__ = ["ManualClock"]


class ManualClock(core.ManualClock):
    """A clock that only moves when told to.

    `now()` returns seconds; `advance(s)` and `sleep(s)` move time forward at once; `await
    asleep(s)` does the same from async code. One clock can drive many primitives, which then
    never really sleep: backoff, open timeouts, windows and limiter waits become instant and
    deterministic. On the Rust backend the time lives in a shared atomic that the core reads
    without calling back into Python.

    Args:
        start: The initial time in seconds (default 0.0).
    """

    async def asleep(self, seconds: float) -> None:
        """Advance the clock by `seconds` at once (the async twin of `sleep`)."""
        self.sleep(seconds)
