"""The deadlines in force for the running code, and how much time they leave.

Every `riprap.deadline` / `riprap.timeout` in force is an entry in a context variable (a tuple,
innermost last), so it follows the code that runs under it: the thread, the asyncio task, tasks
created inside it (they copy the context), and the worker thread a sync call is handed to.
`remaining()` is the time left before the earliest of them: deadlines nest and the earliest wins.

This module imports nothing from the backends, so both the Rust binding and the pure-Python
reference can ask it before they wait.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable

from ._errors import TimeoutExceededError

__all__ = ["DEADLINES", "Entry", "exceeded", "remaining", "tightest"]


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One deadline in force: when it expires, on which clock, and its length."""

    at: float
    now: Callable[[], float]
    seconds: float

    def left(self) -> float:
        return self.at - self.now()


DEADLINES: contextvars.ContextVar[tuple[Entry, ...]] = contextvars.ContextVar(
    "riprap.deadlines", default=()
)


def tightest(stack: tuple[Entry, ...]) -> tuple[Entry, float] | None:
    best: tuple[Entry, float] | None = None
    for entry in stack:
        left = entry.left()
        if best is None or left < best[1]:
            best = (entry, left)
    return best


def remaining() -> float | None:
    """Seconds left before the earliest deadline in force here (>= 0), or None if there is none.

    Each deadline counts on the clock it was made with. riprap's primitives call this before
    they wait, and never wait longer.
    """
    stack = DEADLINES.get()
    if not stack:
        return None
    best = tightest(stack)
    return max(0.0, best[1]) if best is not None else None


def exceeded() -> TimeoutExceededError:
    """A fresh `TimeoutExceededError` for the earliest deadline in force here."""
    best = tightest(DEADLINES.get())
    return TimeoutExceededError(best[0].seconds if best is not None else 0.0)
