"""The async side of a bulkhead: waiting for a slot, and enforcing `timeout` on async calls.

* An async waiter awaits a future that the release handing it the slot resolves, from whichever
  thread releases (exactly that waiter is woken); a waiter that is cancelled, or whose deadline
  cancels it, gives its place back, and a slot handed to it in the same tick goes on.
* A decorated async call runs its first step through the engine (`_step`, which marks the
  thread as holding a slot while the call's code runs). A call that completes without
  suspending cannot be cancelled at its timeout (the loop never ran meanwhile), so only a call
  that suspends is registered with its loop's `Calls`: one timer per bulkhead and event loop
  for all of its calls.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import types
import weakref
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from . import _fork
from ._clock import now_fn

if TYPE_CHECKING:
    from ._bulkhead import Bulkhead

__all__ = [
    "Calls",
    "InFlight",
    "continuation",
    "ended",
    "guard_async",
    "suspended",
    "wait_for_slot",
]

_MANUAL_SLICE = 0.005  # how often an async waiter on a manual clock looks at it again


class Calls:
    """The async calls one bulkhead runs on one event loop, and their timeout.

    One timer, armed for the earliest deadline, watches every call (a loop timer per call costs
    more than a whole guarded call); when it fires it cancels the task of each call past its
    deadline and re-arms for the next. A call's deadline counts from its start. The calls in
    flight are at most the bulkhead's limit, so each firing scans them all. The call's own
    `except` turns the cancellation into `BulkheadTimeoutError`. On a manual clock no timer is
    armed (time only moves when a test moves it): a call that overran is timed out when it
    ends. The hot path reads `entries`, `fired` and `handle` directly.
    """

    __slots__ = ("entries", "fired", "handle", "loop", "manual", "now", "timeout")

    def __init__(self, loop: asyncio.AbstractEventLoop, bulkhead: Bulkhead) -> None:
        self.loop = loop
        self.timeout = bulkhead.timeout
        self.manual = bulkhead.clock is not None
        self.now = now_fn(bulkhead.clock)
        #: permit -> (deadline, task, the task's cancelling() when the call started)
        self.entries: dict[Any, tuple[float, asyncio.Task[Any], int]] = {}
        #: permits whose task the timer cancelled
        self.fired: set[Any] = set()
        self.handle: asyncio.TimerHandle | None = None

    def enter(
        self, key: Any, task: asyncio.Task[Any], start: float | None = None
    ) -> None:
        """Start watching the call holding `key` (its permit), run by `task`, from `start`."""
        at = (self.now() if start is None else start) + self.timeout
        self.entries[key] = (at, task, task.cancelling())
        if self.handle is None:
            self.arm(at)

    def arm(self, at: float) -> None:
        """Arm the timer for deadline `at` (called when none is armed)."""
        if not self.manual:
            self.handle = self.loop.call_later(max(0.0, at - self.now()), self._fire)

    def leave(self, key: Any, exc: BaseException | None) -> bool:
        """Stop watching the call holding `key`, which ended with `exc`; whether it timed out."""
        entry = self.entries.pop(key)
        return bool(self.fired or self.manual) and self.timed_out(key, entry, exc)

    def timed_out(
        self,
        key: Any,
        entry: tuple[float, asyncio.Task[Any], int],
        exc: BaseException | None,
    ) -> bool:
        """Whether the call holding `key` (its `entry` popped already) timed out.

        A call whose task the timer cancelled, with no other cancellation requested since it
        started, timed out; `uncancel()` takes the timer's request back, so the task's
        `cancelling()` count stays balanced. One also cancelled from outside did not.
        """
        if key in self.fired:
            self.fired.discard(key)
            return entry[1].uncancel() <= entry[2] and isinstance(
                exc, asyncio.CancelledError
            )
        return (
            self.manual
            and (exc is None or isinstance(exc, Exception))
            and self.now() >= entry[0]
        )

    def _fire(self) -> None:
        self.handle = None
        now = self.now()
        nearest = None
        for key, (at, task, _) in self.entries.items():
            if at > now:
                nearest = at if nearest is None else min(nearest, at)
            elif key not in self.fired:
                self.fired.add(key)
                task.cancel()
        if nearest is not None:
            self.handle = self.loop.call_later(nearest - now, self._fire)


class InFlight:
    """A bulkhead's `Calls`, one per event loop (no loop is captured at construction).

    `last` caches the most recent loop's `Calls` (one attribute read on the hot path).
    """

    __slots__ = ("__weakref__", "_bulkhead", "_by_loop", "_lock", "last")

    def __init__(self) -> None:
        self._bulkhead: weakref.ref[Bulkhead] | None = None
        self._after_fork()
        _fork.track(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Calls] = (
            weakref.WeakKeyDictionary()
        )
        self.last: tuple[asyncio.AbstractEventLoop | None, Calls | None] = (None, None)

    def calls(self, loop: asyncio.AbstractEventLoop) -> Calls:
        """The calls on `loop` (created on first use)."""
        last_loop, last = self.last
        if last_loop is loop and last is not None:
            return last
        with self._lock:
            calls = self._by_loop.get(loop)
            if calls is None:
                bulkhead = self._bulkhead() if self._bulkhead is not None else None
                assert bulkhead is not None
                calls = self._by_loop[loop] = Calls(loop, bulkhead)
        self.last = (loop, calls)
        return calls


class Waiter:
    """An async waiter's wake-up: a future re-armed for each wait, woken from any thread."""

    __slots__ = ("_fut", "_loop", "_thread", "_woken")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()
        self._fut: asyncio.Future[None] | None = None
        self._woken = False

    def wake(self) -> None:
        self._woken = True
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def wake_threadsafe(self) -> None:
        """What the engine calls (from the releasing thread) when the ticket is decided."""
        if threading.get_ident() == self._thread:
            self.wake()  # a release on the loop's own thread: no self-pipe write needed
        else:
            self._loop.call_soon_threadsafe(self.wake)

    def arm(self) -> asyncio.Future[None]:
        fut = self._fut = self._loop.create_future()
        if self._woken:
            self._woken = False
            fut.set_result(None)
        return fut


async def wait_for_slot(bulkhead: Bulkhead, ticket: int) -> Any:
    """Wait until `ticket` is granted; give the place back if anything ends the wait early."""
    loop = asyncio.get_running_loop()
    waiter = Waiter(loop)
    bulkhead._watch(ticket, waiter.wake_threadsafe)
    max_wait, clock = bulkhead.max_wait, bulkhead.clock
    now = now_fn(clock)
    expires = None if max_wait is None else now() + max_wait
    try:
        while True:
            permit = bulkhead._claim(
                ticket
            )  # raises BulkheadRejectedError when out of time
            if permit is not None:
                return permit
            fut = waiter.arm()
            timer = None
            if expires is not None:
                delay = (
                    _MANUAL_SLICE if clock is not None else max(0.0, expires - now())
                )
                timer = loop.call_later(delay, waiter.wake)
            try:
                await fut
            finally:
                if timer is not None:
                    timer.cancel()
    except BaseException:
        # Cancelled, or the caller's deadline ended the wait: give the place back (a slot
        # handed over in the same tick goes on to the next waiter).
        bulkhead._cancel(ticket)
        raise
    finally:
        bulkhead._unwatch(ticket)


@types.coroutine
def _rest(bulkhead: Bulkhead, aw: Any, yielded: Any) -> Generator[Any, Any, Any]:
    """`await aw` from where its first step suspended (having yielded `yielded`).

    Each step runs through the engine's `_step` / `_throw`, which mark the thread as holding a
    slot of this bulkhead while the call's own code runs: a call it makes into the same
    bulkhead is then seen as re-entrant.
    """
    step, throw = bulkhead._step, bulkhead._throw
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            close = getattr(aw, "close", None)
            if close is not None:
                close()
            raise
        except BaseException as exc:  # a cancellation (or a throw) goes to the call
            done, yielded = throw(aw, exc)
        else:
            done, yielded = step(aw, sent)
        if done:
            return yielded


def guard_async(
    func: Callable[..., Awaitable[Any]], bulkhead: Bulkhead
) -> Callable[..., Any]:
    """A coroutine function that runs `func` in a slot (what `execute` uses for async `func`).

    Decorated async functions are `BulkheadAsyncCall` objects instead (see `continuation`);
    this is the same call written as one `async def`.
    """
    try_acquire, acquire = bulkhead.try_acquire, bulkhead._acquire_async

    @functools.wraps(func)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        permit = try_acquire()
        if permit is None:
            permit = await acquire()
        return await _admitted(bulkhead, permit, func, args, kwargs)

    return guarded


async def _admitted(
    bulkhead: Bulkhead,
    permit: Any,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Run `func(*args, **kwargs)` in the slot of `permit`, then hand the slot back.

    A call that completes without suspending cannot be cancelled at its timeout (the event loop
    never ran meanwhile), so it needs no watchdog: the call's first step runs right here, and
    only a call that suspends is registered with the loop's `Calls` (which needs the current
    task, a lookup that costs more than the rest of the call), with its deadline counted from
    its start. On a manual clock a call that overran is timed out when it ends.
    """
    start = now_fn(bulkhead.clock)()
    token = bulkhead._holding.set(True)
    try:
        aw: Any = func(*args, **kwargs)
        if type(aw) is not types.CoroutineType:
            aw = aw.__await__()
        done, value = bulkhead._step(aw, None)
    except BaseException as exc:
        bulkhead._holding.reset(token)
        return ended(bulkhead, permit, start, None, exc)
    if done:
        bulkhead._holding.reset(token)
        return ended(bulkhead, permit, start, value, None)
    return await suspended(bulkhead, aw, value, permit, start, token)


async def suspended(  # noqa: PLR0917 - the arguments the native guard passes
    bulkhead: Bulkhead, aw: Any, yielded: Any, permit: Any, start: float, token: Any
) -> Any:
    """The rest of a call whose first step suspended, yielding `yielded`.

    The first step ran with the `_holding` mark set (`token` takes it back); the rest is
    watched for its timeout until it ends.
    """
    calls = None
    try:
        calls = bulkhead._track(permit, start)
        value = await _rest(bulkhead, aw, yielded)
    except BaseException as exc:
        bulkhead._holding.reset(token)
        if calls is not None and calls.leave(permit, exc):
            error = bulkhead._timed_out_error(permit)
            bulkhead.release(permit, exc)
            raise error from exc
        return ended(bulkhead, permit, start, None, exc)
    bulkhead._holding.reset(token)
    if calls.leave(permit, None):
        error = bulkhead._timed_out_error(permit)
        bulkhead.release(permit)
        raise error
    return ended(bulkhead, permit, start, value, None)


def ended(
    bulkhead: Bulkhead,
    permit: Any,
    start: float,
    value: Any,
    exc: BaseException | None,
) -> Any:
    """A call in the slot of `permit` ended, returning `value` or raising `exc`.

    Hands the slot back and returns `value` or raises. On a manual clock, a call that ran
    `timeout` or longer (and did not end with a control-flow exception) raises
    `BulkheadTimeoutError` instead.
    """
    if (
        bulkhead.clock is not None
        and (exc is None or isinstance(exc, Exception))
        and now_fn(bulkhead.clock)() - start >= bulkhead.timeout
    ):
        error = bulkhead._timed_out_error(permit)
        bulkhead.release(permit, exc)
        if exc is None:
            raise error
        raise error from exc
    bulkhead.release(permit, exc)
    if exc is not None:
        raise exc
    return value


async def _acquire_then_run(bulkhead: Bulkhead, aw: Any) -> Any:
    """A call that found no free slot: wait for one, then run the awaitable `aw` in it."""
    try:
        permit = await bulkhead._acquire_async()
    except BaseException:
        close = getattr(aw, "close", None)
        if close is not None:
            close()
        raise
    return await _admitted(bulkhead, permit, lambda: aw, (), {})


def continuation(bulkhead: Bulkhead) -> Callable[..., Any]:
    """What a bulkhead's `BulkheadAsyncCall` hands a call to when it cannot finish it alone.

    The native wrapper takes a free slot, runs the call's first step and hands the slot back,
    all without Python. It calls this function's result instead when:

    * `("acquire", aw)`: no slot was free; returns a coroutine that waits for one and runs `aw`;
    * `("suspended", aw, yielded, permit, start, token)`: the first step suspended; returns a
      coroutine that yields `yielded` first, then runs the rest under the timeout watchdog;
    * `("ended", permit, start, value, exc)`: the call ended on a manual clock after its
      timeout (or the slot needs the slow release); returns `value` or raises.
    """

    def slow(kind: str, *args: Any) -> Any:
        if kind == "acquire":
            return _acquire_then_run(bulkhead, *args)
        if kind == "suspended":
            return suspended(bulkhead, *args)
        return ended(bulkhead, *args)

    return slow
