"""Simulated time for the demo: an asyncio event loop whose clock is a `ManualClock`.

The demo runs a minute or more of a fleet's life in a second or two, and the same seed gives the
same run, on any machine, however loaded. Two pieces make that work:

* `SimClock`, a `riprap.testing.ManualClock` whose `asleep(s)` really suspends the caller (on
  the loop below) instead of moving time at once. Every riprap primitive of the demo gets it as
  its `clock=`, so backoff sleeps, limiter waits, bulkhead queues, open breakers and injected
  latency all wait in simulated time, side by side, as they would in real time.
* `SimLoop`, a selector event loop whose `time()` is the clock and whose selector, instead of
  blocking until the next timer, moves the clock to it. When every task waits, time jumps to
  the earliest wake-up; nothing really sleeps (unless `pace` asks for it).

Work handed to a thread (`asyncio.to_thread`, as the dead-letter decorator does for its
durable write) runs at once on the loop's thread: a thread finishing at a moment of real time
would make the run depend on the machine. A sync call made from a task (the demo's database
client is sync) advances the clock while it runs and holds up every other task meanwhile, as a
blocking call inside a real event loop does.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from riprap.testing import ManualClock

__all__ = ["SimClock", "SimLoop", "run"]

T = TypeVar("T")


class SimClock(ManualClock):
    """A manual clock whose `asleep` waits on the simulated-time loop (see `SimLoop`)."""

    async def asleep(self, seconds: float) -> None:
        """Suspend the caller until the clock has moved `seconds` on (other tasks run)."""
        await asyncio.sleep(seconds)


class _SimSelector(selectors.DefaultSelector):
    """A selector that moves the clock to the next timer instead of waiting for it."""

    def __init__(self, clock: ManualClock, pace: float | None) -> None:
        super().__init__()
        self.clock = clock
        self.pace = pace

    def select(
        self, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            # No timer and nothing ready: in the simulation every wait is a timer, so nothing
            # could ever wake the loop again.
            raise RuntimeError(
                "the simulation stalled: every task is waiting and no timer is set"
            )
        if timeout > 0:
            # Whole nanoseconds, rounded up: the clock counts nanoseconds, and a timer must be
            # due once the clock has moved.
            step = math.ceil(timeout * 1e9) / 1e9
            if self.pace:
                time.sleep(step * self.pace)
            self.clock.advance(step)
        return super().select(0)


class SimLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated time: `time()` reads `clock`; idle time is skipped.

    Args:
        clock: The clock the loop reads and moves (the primitives' `clock=`).
        pace: Real seconds to spend per simulated second (None: none, as fast as it runs).
    """

    def __init__(self, clock: ManualClock, pace: float | None = None) -> None:
        super().__init__(_SimSelector(clock, pace))
        self._sim_clock = clock

    def time(self) -> float:
        """The simulated time, in seconds."""
        return self._sim_clock.now()

    def run_in_executor(  # type: ignore[override]
        self, executor: object, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """Run `func(*args)` now, on this thread (see the module docs), as a done future."""
        fut: asyncio.Future[T] = self.create_future()
        try:
            fut.set_result(func(*args))
        except Exception as exc:
            fut.set_exception(exc)
        return fut


def run(
    main: Coroutine[Any, Any, T], clock: ManualClock, *, pace: float | None = None
) -> T:
    """Run `main` to completion on a fresh `SimLoop` over `clock`; return its result."""
    with asyncio.Runner(loop_factory=lambda: SimLoop(clock, pace)) as runner:
        return runner.run(main)
