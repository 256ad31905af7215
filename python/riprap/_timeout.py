"""Timeouts and deadlines: `riprap.timeout`, `riprap.deadline`, and `remaining()`.

How it works:

* Every deadline in force is an entry in a context variable (a tuple, innermost last), so it
  follows the code that runs under it: the thread, the asyncio task, tasks created inside it
  (they copy the context), and the worker thread a sync call is handed to. `remaining()` is the
  time left before the earliest of them: deadlines nest and the earliest wins.
* Async: entering a deadline arms one timer on the running loop that cancels the task when the
  deadline comes; leaving it turns that cancellation into `TimeoutExceededError`. A cancellation
  from outside that races the timer stays a `CancelledError`, and the task's `cancelling()` count
  is left balanced (the rule `asyncio.timeout` follows since python/cpython#86296).
* Sync: Python cannot interrupt code that is running. `riprap.timeout` on a sync function runs it
  in a worker thread and stops *waiting* at the deadline: the caller gets `TimeoutExceededError`
  and the worker is abandoned, still running, until the function returns (counted in
  `abandoned_calls()` and the decorator's `get_stats()`). `with riprap.deadline(s):` on sync code
  never interrupts the block and never fails a block that completed; riprap's own waits inside it
  (a bulkhead queue today) never wait past it.
* On a `ManualClock` time only moves when a test moves it, so no timer can fire: an async deadline
  or a sync timeout whose clock has passed the deadline when the work ends raises
  `TimeoutExceededError` then, as if the work had been stopped at the deadline.

For the other primitives: `remaining()` gives the seconds left (or None), and `exceeded()` the
error to raise when a wait reaches the deadline (both live in `_deadlines`, re-exported here).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar, cast

from . import _fork
from . import _validate as v
from ._clock import check_clock, now_fn
from ._deadlines import DEADLINES, Entry, exceeded, remaining, tightest
from ._decorate import decorate
from ._errors import TimeoutExceededError

__all__ = [
    "Deadline",
    "Timeout",
    "abandoned_calls",
    "deadline",
    "exceeded",
    "remaining",
    "submit",
    "timeout",
]

logger = logging.getLogger("riprap")
logger.addHandler(logging.NullHandler())  # a library never configures logging

F = TypeVar("F", bound=Callable[..., Any])

_MANUAL_SLICE = (
    0.005  # how often a wait on a manual clock looks at it again (real seconds)
)


def _seconds(value: object, *, allow_zero: bool) -> float:
    return v.check_float("seconds", v.number("seconds", value), 0.0, allow_zero)


def _is_manual(clock: object) -> bool:
    return clock is not None


class Deadline:
    """A deadline for a block: `with riprap.deadline(s):` or `async with riprap.deadline(s):`.

    It starts when the block is entered. Each `Deadline` object is entered once.
    """

    __slots__ = (
        "_cancelling",
        "_clock",
        "_entry",
        "_handle",
        "_state",
        "_task",
        "_token",
    )

    def __init__(self, seconds: float, *, clock: object = None) -> None:
        self._clock = check_clock(clock)
        self._entry = Entry(
            0.0, now_fn(self._clock), _seconds(seconds, allow_zero=True)
        )
        self._token: contextvars.Token[tuple[Entry, ...]] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        # new, entered, expiring (our cancel is on its way), fired (it ended the block), done
        self._state = "new"

    @property
    def seconds(self) -> float:
        """The deadline's length in seconds."""
        return self._entry.seconds

    def remaining(self) -> float | None:
        """Seconds left before this deadline (>= 0); None before the block is entered."""
        if self._state == "new":
            return None
        return max(0.0, self._entry.left())

    @property
    def expired(self) -> bool:
        """Whether the deadline has come (False before the block is entered)."""
        return self._state != "new" and self._entry.left() <= 0.0

    @property
    def fired(self) -> bool:
        """Whether this deadline ended its (async) block with `TimeoutExceededError`."""
        return self._state == "fired"

    def _push(self) -> None:
        if self._state != "new":
            raise RuntimeError("a riprap.deadline can be entered only once")
        now = self._entry.now
        self._entry = Entry(now() + self._entry.seconds, now, self._entry.seconds)
        self._token = DEADLINES.set((*DEADLINES.get(), self._entry))
        self._state = "entered"

    def _pop(self) -> None:
        if self._token is not None:
            DEADLINES.reset(self._token)
            self._token = None

    def __enter__(self) -> Deadline:
        self._push()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pop()
        self._state = "done"

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("riprap.deadline: async with must run inside a task")
        self._push()
        self._task = task
        self._cancelling = task.cancelling()
        if not _is_manual(self._clock):
            self._handle = task.get_loop().call_later(
                max(0.0, self._entry.left()), self._expire
            )
        return self

    def _expire(self) -> None:
        self._handle = None
        if self._state == "entered" and self._task is not None:
            self._task.cancel()
            self._state = "expiring"

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._pop()
        expiring, self._state = self._state == "expiring", "done"
        if expiring:
            assert self._task is not None
            # Ours is the only cancel request on top of those made before the block: this is
            # the timeout, not a cancellation from outside.
            if self._task.uncancel() <= self._cancelling and isinstance(
                exc, asyncio.CancelledError
            ):
                self._state = "fired"
                raise TimeoutExceededError(self._entry.seconds) from exc
        elif (
            _is_manual(self._clock)
            and (exc is None or isinstance(exc, Exception))
            and self._entry.left() <= 0.0
        ):
            # A manual clock cannot fire a timer: the work overran, so it ends as if stopped.
            self._state = "fired"
            raise TimeoutExceededError(self._entry.seconds) from exc


def deadline(seconds: float, *, clock: object = None) -> Deadline:
    """A deadline for a block of code, sync or async.

    `async with riprap.deadline(2.0):` cancels the block's task when the 2 s are up and raises
    `TimeoutExceededError` (a `TimeoutError`). `with riprap.deadline(2.0):` cannot interrupt sync
    code: riprap's waits inside the block (a bulkhead queue) never wait past the deadline and
    raise `TimeoutExceededError` when they would, but a block that completes is never failed
    after the fact. Deadlines nest: the earliest wins (`remaining()` reports it).

    Args:
        seconds: The deadline's length, from entering the block (finite, >= 0).
        clock: A `riprap.testing.ManualClock` (default: the monotonic clock).

    .. versionadded:: 0.1.0
    """
    return Deadline(seconds, clock=clock)


# --- worker threads for sync work under a timeout ---------------------------------------------


class _Pool:
    """The jobs queue and idle count of one process's worker threads."""

    __slots__ = ("idle", "jobs", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.idle = 0


class _Workers:
    """Daemon threads that run sync calls for callers that wait with a deadline.

    A caller that gives up abandons its call, still running, so a bounded pool would fill up
    with stuck calls; instead a new thread starts whenever no idle one is waiting. Idle threads
    exit after `IDLE` seconds. They are daemon threads: an abandoned call never keeps the
    interpreter from exiting. Each thread serves the pool it was started for, so a forked child
    (whose pool is new, and which has none of its parent's threads) never counts on them.
    """

    IDLE = 10.0

    def __init__(self) -> None:
        self._names = itertools.count(1)
        self._after_fork()
        _fork.track(self)

    def _after_fork(self) -> None:
        self._pool = _Pool()

    def submit(self, job: Callable[[], None]) -> None:
        pool = self._pool
        with pool.lock:
            spawn = pool.idle == 0
            if not spawn:
                pool.idle -= 1
        pool.jobs.put(job)
        if spawn:
            threading.Thread(
                target=self._work,
                args=(pool,),
                name=f"riprap-worker-{next(self._names)}",
                daemon=True,
            ).start()

    @staticmethod
    def _work(pool: _Pool) -> None:
        while True:
            try:
                job = pool.jobs.get(timeout=_Workers.IDLE)
            except queue.Empty:
                with pool.lock:
                    if pool.idle > 0:  # still counted idle: nobody is sending us a job
                        pool.idle -= 1
                        return
                continue  # a job is on its way to some idle worker: maybe us
            try:
                job()
            except (
                BaseException
            ):  # a job must not raise; if one does, keep the thread alive
                logger.exception("riprap worker: a job raised")
            del job
            with pool.lock:
                pool.idle += 1


_WORKERS = _Workers()


def submit(job: Callable[[], None]) -> None:
    """Run `job()` on a riprap worker thread (it must not raise)."""
    _WORKERS.submit(job)


_ABANDONED_LOCK = threading.Lock()
_abandoned = 0


def abandoned_calls() -> int:
    """Sync calls whose caller stopped waiting (timeout) that are still running, process-wide."""
    return _abandoned


class _Job:
    """One sync call on a worker thread, and what the caller learns of it.

    A caller that stops waiting `abandon()`s it; whoever needs to know when an abandoned call
    really ends (its bulkhead slot, the counts) registers with `on_end`.
    """

    __slots__ = ("abandoned", "callbacks", "done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.callbacks: list[Callable[[], object]] = []

    def run(
        self,
        ctx: contextvars.Context,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        try:
            self.result = ctx.run(func, *args, **kwargs)
        except BaseException as exc:  # delivered to the caller (or dropped if it left)
            self.error = exc
        finally:
            global _abandoned
            with _ABANDONED_LOCK:
                self.done.set()
                callbacks, self.callbacks = self.callbacks, []
                if self.abandoned:
                    _abandoned -= 1
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    logger.exception(
                        "riprap: a callback at the end of abandoned work raised"
                    )

    def abandon(self) -> bool:
        """The caller stops waiting; False if the call had ended after all."""
        global _abandoned
        with _ABANDONED_LOCK:
            if self.done.is_set():
                return False
            self.abandoned = True
            _abandoned += 1
            return True

    def on_end(self, callback: Callable[[], object]) -> bool:
        """Call `callback()` on the worker thread when the call ends; False if it has ended."""
        with _ABANDONED_LOCK:
            if self.done.is_set():
                return False
            self.callbacks.append(callback)
            return True

    def outcome(self) -> Any:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return self.result


# --- riprap.timeout ----------------------------------------------------------------------------


class Timeout:
    """The `riprap.timeout(seconds)` decorator; see `timeout`."""

    __slots__ = ("_clock", "_lock", "_seconds", "_stats")

    def __init__(self, seconds: float, *, clock: object = None) -> None:
        self._seconds = _seconds(seconds, allow_zero=False)
        self._clock = check_clock(clock)
        self._lock = threading.Lock()
        self._stats = {"calls": 0, "timed_out": 0, "abandoned_running": 0}

    @property
    def seconds(self) -> float:
        """The time limit of each call."""
        return self._seconds

    def get_stats(self) -> dict[str, Any]:
        """Counters of this decorator.

        Keys: `timeout` (seconds), `calls` (started), `timed_out` (ended by the limit, or by an
        earlier deadline around them) and `abandoned_running` (sync calls timed out that are
        still running in their worker thread).
        """
        with self._lock:
            return {"timeout": self._seconds, **self._stats}

    def _count(self, key: str, delta: int = 1) -> None:
        with self._lock:
            self._stats[key] += delta

    def __call__(self, func: F) -> F:
        def tag(wrapper: Any) -> Any:
            wrapper.timeout = self
            return wrapper

        return cast(
            F,
            decorate(
                func,
                "riprap.timeout",
                native=lambda f: tag(self._sync(f)),
                coroutine=lambda f: tag(self._async(f)),
            ),
        )

    def _sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            return self._call_sync(func, args, kwargs)

        return timed

    def _call_sync(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        self._count("calls")
        now = now_fn(self._clock)
        entry = Entry(now() + self._seconds, now, self._seconds)
        stack = (*DEADLINES.get(), entry)
        token = DEADLINES.set(stack)
        try:
            ctx = contextvars.copy_context()  # the worker runs under the same deadlines
        finally:
            DEADLINES.reset(token)
        job = _Job()
        submit(lambda: job.run(ctx, func, args, kwargs))
        manual = _is_manual(self._clock)
        while True:
            best = tightest(stack)
            assert best is not None
            left = best[1]
            if job.done.is_set():
                if manual and left <= 0.0:
                    break  # it overran its deadline on the manual clock
                return job.outcome()
            if left <= 0.0:
                break
            job.done.wait(_MANUAL_SLICE if manual else left)
        self._count("timed_out")
        error = TimeoutExceededError(best[0].seconds)
        if job.abandon():
            self._count("abandoned_running")
            ended = functools.partial(self._count, "abandoned_running", -1)
            if not job.on_end(ended):
                ended()
            # A bulkhead around this call keeps its slot until the work really ends.
            error._riprap_abandoned = job  # type: ignore[attr-defined]
        raise error

    def _async(self, func: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        seconds, clock = self._seconds, self._clock

        @functools.wraps(func)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            self._count("calls")
            scope = Deadline(seconds, clock=clock)
            try:
                async with scope:
                    return await func(*args, **kwargs)
            except TimeoutExceededError:
                if scope.fired:
                    self._count("timed_out")
                raise

        return timed


def timeout(seconds: float, *, clock: object = None) -> Timeout:
    """Limit each call of a function to `seconds`: `@riprap.timeout(5.0)`.

    On an `async def` function the call is cancelled at the limit and `TimeoutExceededError`
    raised (an outside cancellation stays a `CancelledError`). On a sync function, which Python
    cannot interrupt, the call runs in a worker thread and the caller stops waiting at the
    limit: it gets `TimeoutExceededError` while the abandoned call runs on until it returns
    (see `abandoned_calls()`). The call runs under a deadline, so riprap's waits inside it
    respect the limit, and an earlier deadline around the call wins. The decorator keeps the
    function's colour, name, `__wrapped__` and signature, and refuses generator functions. The
    wrapper's `timeout` attribute is this decorator (with `get_stats()`).

    Args:
        seconds: The limit per call (finite, > 0).
        clock: A `riprap.testing.ManualClock` (default: the monotonic clock).

    .. versionadded:: 0.1.0
    """
    return Timeout(seconds, clock=clock)
