"""Run one call within a time bound, judged on a clock, when Python cannot interrupt it.

An async call runs as a task and is cancelled at the deadline; its cleanup has run before the
caller goes on. A sync call runs in a new daemon worker thread (with a copy of the caller's
context variables) and the caller waits for it until the deadline; a thread still running then
is abandoned: it runs on until the function returns, and `on_abandon` is told about it.

The deadline is judged on the given clock. On a ManualClock, which only moves when some other
code advances it, a waiting caller looks at the clock again every millisecond of real time, and
a call that moved the clock past its deadline (say with `clock.sleep`) has overrun even though it
returned. A call may take exactly `timeout`.

Both functions take a `Bound` (the limit, the clock, what to do with an abandoned thread) and
return `(True, result)` for a call that finished in time, or `(False, abandoned)` for one that
overran (`abandoned`: its thread was left running). The call's own exception, if it raised in
time, is raised as is (from a worker thread, the very object it raised).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import contextvars
import inspect
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from ._decorate import is_async, name_of

__all__ = ["Bound", "run_bounded", "run_in_thread"]

#: How often a wait bounded on a ManualClock looks at the clock again (real seconds).
POLL = 0.001

Outcome = tuple[bool, Any]


class Bound(NamedTuple):
    """How long a call may take, on which clock, and who hears of an abandoned thread."""

    timeout: float
    now: Callable[[], float]
    manual: bool  # a ManualClock: poll it instead of waiting for real time
    on_abandon: Callable[[cf.Future[Any]], None]


def _thread_main(
    fut: cf.Future[Any],
    ctx: contextvars.Context,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    if not fut.set_running_or_notify_cancel():
        return
    try:
        result = ctx.run(func, *args, **kwargs)
    except BaseException as exc:  # handed to the caller's thread, which re-raises it
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _start_thread(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> cf.Future[Any]:
    fut: cf.Future[Any] = cf.Future()
    thread = threading.Thread(
        target=_thread_main,
        args=(fut, contextvars.copy_context(), func, args, kwargs),
        name=f"riprap-fallback {name_of(func)}",
        daemon=True,
    )
    thread.start()
    return fut


def run_in_thread(
    bound: Bound,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Outcome:
    """Call sync `func` in a worker thread and wait for it until `timeout` has passed."""
    timeout, now, manual, on_abandon = bound
    start = now()
    fut = _start_thread(func, args, kwargs)
    while True:
        remaining = start + timeout - now()
        if remaining < 0.0:
            break
        done, _ = cf.wait((fut,), POLL if manual else remaining)
        if done:
            break
    if not fut.done():
        on_abandon(fut)
        return False, True
    if now() - start > timeout:
        return False, False
    return True, fut.result()


def _when_done(thread: cf.Future[Any]) -> asyncio.Future[None]:
    """An asyncio future of the running loop that completes when `thread` has finished."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def wake(_: object) -> None:
        # RuntimeError: the loop is closed, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_set_done, done)

    thread.add_done_callback(wake)
    return done


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a finished future's exception as seen (no "never retrieved" log line)."""
    if fut.done() and not fut.cancelled():
        fut.exception()


async def run_bounded(
    bound: Bound,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Outcome:
    """Await `func(*args, **kwargs)` until `timeout` has passed.

    An async `func` runs as a task, a sync one in a worker thread; an awaitable the thread
    returns is then awaited within the same bound.
    """
    start = bound.now()
    if is_async(func):
        task = asyncio.ensure_future(func(*args, **kwargs))
        return await _wait(bound, start, task, None)
    thread = _start_thread(func, args, kwargs)
    in_time, value = await _wait(bound, start, _when_done(thread), thread)
    if in_time and inspect.isawaitable(value):  # e.g. a lambda that returns a coroutine
        task = asyncio.ensure_future(value)
        return await _wait(bound, start, task, None)
    return in_time, value


async def _wait(
    bound: Bound,
    start: float,
    fut: asyncio.Future[Any],
    thread: cf.Future[Any] | None,
) -> Outcome:
    """Wait for `fut` (a task, or the stand-in of `thread`) until the deadline."""
    timeout, now, manual, on_abandon = bound

    def finished() -> bool:
        return fut.done() or (thread is not None and thread.done())

    try:
        while not finished():
            remaining = start + timeout - now()
            if remaining < 0.0:
                break
            await asyncio.wait((fut,), timeout=POLL if manual else remaining)
    except BaseException:
        # We were cancelled (or interrupted) while waiting: stop the call too.
        fut.cancel()
        if thread is not None and not thread.done():
            on_abandon(thread)
        raise
    if not finished():
        fut.cancel()
        if thread is not None:
            on_abandon(thread)
            return False, True
        await asyncio.wait((fut,))  # its cleanup runs before the caller goes on
        _retrieve(fut)
        return False, False
    if now() - start > timeout:
        _retrieve(fut)
        return False, False
    # A thread's outcome is read from its own future: the exception object as raised
    # (asyncio.wrap_future would replace a TimeoutError with a copy).
    return True, (thread.result() if thread is not None else fut.result())
