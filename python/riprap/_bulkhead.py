"""Bulkheads: the validated config and `Bulkhead` (alias `ResourceBulkhead`).

How a call runs through a bulkhead:

* `BulkheadConfig` compiles once into a core `BulkheadConfig` (validated by the core, so both
  backends raise the same messages). `Bulkhead` *is* a core `BulkheadEngine` (a subclass), so
  `with bh:` and the native wrapper of a decorated sync function reach the core without a Python
  frame: while a slot is free and nobody waits, one compare-and-swap in and one out.
* A caller that finds no free slot queues (first come, first served) or is rejected at once: the
  queue is full, its deadline (`riprap.deadline` / `riprap.timeout` around it) comes before its
  expected turn, or it already holds a slot of this bulkhead (waiting could deadlock). Sync
  callers wait in the core with the GIL released; async callers await a future that the release
  handing them the slot resolves (exactly that waiter is woken). A waiter that is cancelled gives
  its place back, and a slot handed to it in the same tick goes on to the next waiter.
* `timeout` bounds async calls (decorator, `async with`, `execute`): the task is cancelled when
  it runs out and `BulkheadTimeoutError` is raised; a cancellation from outside stays a
  `CancelledError`. A call that completes without suspending cannot be cancelled (the event loop
  never ran meanwhile), so only a call that suspends is registered with its loop's watchdog: one
  timer per bulkhead and event loop for all of its calls, so a call costs a dictionary entry,
  not a timer. `execute(sync_func)` runs the function in a worker thread: at the timeout the
  caller gets `BulkheadTimeoutError` and the thread is abandoned, its slot held until the
  function really returns. The sync decorator and `with bh:` run in the caller's thread and
  cannot be interrupted: they do not enforce `timeout` (wrap the function in `riprap.timeout`,
  or use `execute`).
* Every slot is released exactly once, whatever ends the call (return, exception, cancellation,
  timeout); control-flow exceptions pass through untouched.

The async waiting and the watchdog live in `_bulkhead_async.py`, the manager and the
`riprap.bulkhead` decorator in `_bulkhead_manager.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import itertools
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar, cast

from . import _registry, _timeout
from ._backend import core
from ._bulkhead_async import Calls, InFlight, continuation, guard_async, wait_for_slot
from ._clock import check_clock
from ._decorate import decorate, is_async, native_coroutine_function
from ._errors import (
    BulkheadRejectedError,
    BulkheadTimeoutError,
    CircuitOpenError,
    RateLimitExceeded,
)

__all__ = ["Bulkhead", "BulkheadConfig", "ResourceBulkhead", "live_bulkheads"]

F = TypeVar("F", bound=Callable[..., Any])

#: Exceptions that end a call without saying anything about the dependency: another layer of
#: riprap refused it. They are not samples for the adaptive limit.
IGNORED = (CircuitOpenError, RateLimitExceeded, BulkheadRejectedError)


@dataclasses.dataclass(frozen=True)
class BulkheadConfig:
    """How many calls run at once, how many may wait, and for how long.

    The first four fields and their defaults are the seed design's; `max_wait` and
    `slow_call_duration` are riprap's. Construction validates every field and raises
    `ValueError`/`TypeError` naming the bad one. The config is immutable and may be shared.

    Attributes:
        max_concurrent_calls: Calls allowed to run at once (1 to 10**9).
        max_queue_size: Callers allowed to wait for a slot (0 to 10**9); beyond that a caller is
            rejected at once.
        timeout: Seconds an async call (or a call run by `execute`) may run before it is
            cancelled (or abandoned) with `BulkheadTimeoutError` (> 0).
        isolation_level: "strict" (at most `max_concurrent_calls`), "shared" (at most
            `int(1.2 * max_concurrent_calls)`) or "adaptive" (a limit that moves between 1 and
            `max_concurrent_calls`: halved when calls fail, time out or are slow, raised one step
            per round of successful calls made while at least half of it was in use).
        max_wait: Seconds a caller may wait in the queue before `BulkheadRejectedError` (None:
            as long as it takes; 0: never wait).
        slow_call_duration: "adaptive" only: a successful call lasting at least this long counts
            against the limit like a failure (None: half of `timeout`).
    """

    max_concurrent_calls: int = 10
    max_queue_size: int = 100
    timeout: float = 30.0
    isolation_level: str = "strict"
    max_wait: float | None = None
    slow_call_duration: float | None = None
    _core: core.BulkheadConfig = dataclasses.field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "_core",
            core.BulkheadConfig(
                max_concurrent_calls=self.max_concurrent_calls,
                max_queue_size=self.max_queue_size,
                timeout=self.timeout,
                isolation_level=self.isolation_level,
                max_wait=self.max_wait,
                slow_call_duration=self.slow_call_duration,
            ),
        )


_LIVE: weakref.WeakValueDictionary[int, Bulkhead] = weakref.WeakValueDictionary()
_IDS = itertools.count()


def live_bulkheads() -> list[Bulkhead]:
    """Every bulkhead still alive, manager-made or not, oldest first (for monitors, metrics)."""
    return list(_LIVE.values())


class Bulkhead(core.BulkheadEngine):
    """A bulkhead: at most N calls to a dependency at once, a bounded FIFO queue for the rest.

    Use it as `await bh.execute(func, *args, **kwargs)` (sync or async `func`), as a decorator
    on sync and async functions and methods (`@bh`), or as `with bh:` / `async with bh:`. One
    bulkhead serves any number of threads and event loops at once.

    Admission: at most `max_concurrent_calls` calls run at once (20 % more, rounded down, for
    "shared"; a moving limit for "adaptive", shown as `current_limit` in the stats). A caller
    that finds every slot busy waits in the queue, first come first served (a newcomer never
    overtakes a waiter), or is rejected at once with `BulkheadRejectedError` when the queue is
    full, when its own deadline (a `riprap.deadline` or `riprap.timeout` around it) comes before
    its expected turn (estimated from the bulkhead's recent call durations), or when it already
    holds a slot of this bulkhead: waiting for a second slot could deadlock. "It" is the same
    thread, or the same asyncio task and the tasks created while it holds the slot (it may be
    awaiting them: `asyncio.wait_for`, `gather`); such a task is still admitted when a slot is
    free, and rejected rather than queued when none is. A waiter still queued after `max_wait`
    is rejected, and a sync wait that reaches the caller's deadline raises
    `TimeoutExceededError`. Sync waiters block
    with the GIL released (Ctrl-C works); async waiters are woken exactly when their slot is
    handed to them; a waiter that is cancelled gives its place back.

    Timeouts: see the module docs. Async calls are cancelled at `timeout` with
    `BulkheadTimeoutError`; `execute` runs a sync function in a worker thread it abandons at
    `timeout` (the slot stays taken until the function returns); the sync decorator and
    `with bh:` cannot interrupt the caller's own thread and do not enforce `timeout`.

    Args:
        name: The bulkhead's name (in errors and stats).
        config: A `BulkheadConfig` (default: `BulkheadConfig()`).
        clock: A `riprap.testing.ManualClock` (default: the monotonic clock).

    .. versionadded:: 0.1.0
    """

    _settings: BulkheadConfig
    _inflight: InFlight
    _scopes: contextvars.ContextVar[tuple[tuple[Any, Calls, Any], ...]]
    _holding: contextvars.ContextVar[bool]

    def __new__(
        cls, name: str, config: BulkheadConfig | None = None, *, clock: object = None
    ) -> Bulkhead:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if config is None:
            config = BulkheadConfig()
        elif not isinstance(config, BulkheadConfig):
            raise TypeError(
                f"config must be a BulkheadConfig, got {type(config).__name__}"
            )
        inflight = InFlight()
        # Set while the current context (a task, or a thread's calls) holds a slot; tasks
        # created meanwhile inherit it. Read only when a caller is about to wait.
        held: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"riprap.bulkhead.{name}.held", default=False
        )
        self = super().__new__(
            cls,
            name,
            config._core,
            clock=check_clock(clock),
            ignored=IGNORED,
            held=held,
        )
        inflight._bulkhead = weakref.ref(self)
        self._settings = config
        self._inflight = inflight
        self._holding = held
        # Slots of `async with` blocks, per task (a stack, for nesting).
        self._scopes = contextvars.ContextVar(f"riprap.bulkhead.{name}", default=())
        _LIVE[next(_IDS)] = self
        _registry.track(_registry.BULKHEAD, self, name)
        return self

    @property
    def config(self) -> BulkheadConfig:
        """The configuration."""
        return self._settings

    def get_stats(self) -> dict[str, Any]:
        """A snapshot of the bulkhead.

        Keys (the seed's first, then riprap's):

        * `name`; `active_calls`: slots held now (calls running, including timed-out sync
          calls that have not returned yet); `queued_calls`: callers waiting now.
        * `rejected_calls`: every rejection since creation; `total_calls`: every call that
          asked for a slot (admitted, waiting, rejected, or gave up while waiting);
          `rejection_rate`: `rejected_calls / total_calls` (0.0 before any call).
        * `utilization`: `active_calls / max_concurrent_calls` ("shared" can reach 1.2).
        * `config`: `max_concurrent`, `max_queue_size`, `timeout`, `isolation_level`,
          `max_wait`, `slow_call_duration`.
        * `current_limit`: the admission limit now (`max_concurrent_calls`, 20 % more for
          "shared", the moving limit for "adaptive").
        * `admitted_calls` (at once or after waiting), `waited_calls` (admitted after waiting),
          `cancelled_waits` (gave up while waiting: cancelled, interrupted, or their deadline
          came), `timed_out_calls`, `running_after_timeout` (timed-out sync calls still running
          in their abandoned thread, holding their slot).
        * `average_duration`: the mean time a call held its slot, in seconds, over the calls
          measured (those admitted into a full bulkhead or from the queue, and every call in
          adaptive mode); None before any. It is what deadline-aware queueing estimates waits
          from.
        * `rejected_queue_full`, `rejected_max_wait`, `rejected_deadline`, `rejected_reentrant`:
          the rejections by reason.

        Reading the stats rejects (and wakes) waiters whose `max_wait` has run out.
        """
        return super().get_stats()

    # -- decorator -----------------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        """Guard a sync or async function, method or callable with this bulkhead.

        The wrapper keeps `__wrapped__`, `__name__`, the signature and
        `inspect.iscoroutinefunction`; on a sync function it is a native object that binds as a
        method. Generator functions are refused with TypeError. The wrapper's `bulkhead`
        attribute is this bulkhead.
        """

        def tag(wrapper: Any) -> Any:
            wrapper.bulkhead = self
            return wrapper

        return cast(
            F,
            decorate(
                func,
                "a bulkhead",
                native=lambda f: tag(core.BulkheadCall(f, self)),
                coroutine=lambda f: tag(self._async_call(f)),
            ),
        )

    # -- async machinery ----------------------------------------------------------------------

    def _async_call(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """The async decorator: a native coroutine function, or a Python `async def`.

        The `async def` is for an async callable that `inspect` cannot see as a coroutine
        function.

        Each call of the native one is a riprap `Coroutine`: while a slot is free it takes it,
        runs the call's first step and, if that step ends the call, hands the slot back with no
        Python frame; anything more goes on in `continuation(self)`.
        """
        wrapper = core.BulkheadAsyncCall(func, self, continuation(self))
        if native_coroutine_function(wrapper, func):
            return wrapper
        return guard_async(func, self)

    async def _acquire_async(self) -> Any:
        """A permit for an async caller: at once, or after waiting its turn."""
        permit = self.try_acquire()
        if permit is not None:
            return permit
        got = self._acquire(self._holding.get(), _timeout.remaining())
        if isinstance(got, int):
            return await wait_for_slot(self, got)
        return got

    def _track(self, permit: Any, start: float) -> Calls:
        """Watch the call holding `permit` (started at `start`), run by the current task."""
        task: Any = asyncio.current_task()
        calls = self._inflight.calls(task.get_loop())
        calls.enter(permit, task, start)
        return calls

    def _timed_out_error(self, permit: Any) -> BulkheadTimeoutError:
        self._timed_out(permit)
        return BulkheadTimeoutError(self.name, self.timeout)

    async def execute(
        self, func: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Any:
        """Run `func(*args, **kwargs)` in a slot; `func` may be sync or async.

        An async function runs in the caller's task and is cancelled at `timeout`. A sync
        function runs in a worker thread; at `timeout` the caller stops waiting and the thread
        is abandoned, keeping its slot until the function returns. If a sync function returns
        an awaitable, it is awaited in the slot, within the same `timeout`.

        Raises:
            BulkheadRejectedError: no slot (see the class docs); a fresh instance every time.
            BulkheadTimeoutError: the call ran longer than `timeout`.
        """
        if is_async(func):
            return await guard_async(func, self)(*args, **kwargs)
        permit = await self._acquire_async()
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        calls = self._inflight.calls(loop)
        calls.enter(permit, task)
        job = _timeout._Job()
        arrived: asyncio.Future[None] = loop.create_future()
        ctx = contextvars.copy_context()

        def deliver() -> None:
            if not arrived.done():  # the caller may have left (ccxt/ccxt#1094)
                arrived.set_result(None)

        def work() -> None:
            job.run(ctx, self._call_held, (func, *args), kwargs)
            with contextlib.suppress(RuntimeError):  # a closed loop: the caller is gone
                loop.call_soon_threadsafe(deliver)

        _timeout.submit(work)
        try:
            await arrived
        except BaseException as exc:
            timed_out = calls.leave(permit, exc)
            # The function is still running: its thread releases the slot when it returns.
            if not (
                job.abandon() and job.on_end(lambda: self.release(permit, job.error))
            ):
                self.release(permit, job.error)
            if timed_out:
                raise self._timed_out_error(permit) from exc
            raise
        timed_out = calls.leave(permit, None)
        if timed_out:  # a manual clock that the call moved past its timeout
            error = self._timed_out_error(permit)
            self.release(permit, job.error)
            raise error
        if job.error is None and _is_awaitable(job.result):
            return await self._finish_awaitable(permit, calls, task, job.result)
        self.release(permit, job.error)
        return job.outcome()

    async def _finish_awaitable(
        self, permit: Any, calls: Calls, task: asyncio.Task[Any], awaitable: Any
    ) -> Any:
        calls.enter(permit, task)
        try:
            result = await awaitable
        except BaseException as exc:
            if calls.leave(permit, exc):
                error = self._timed_out_error(permit)
                self.release(permit, exc)
                raise error from exc
            self.release(permit, exc)
            raise
        if calls.leave(permit, None):
            error = self._timed_out_error(permit)
            self.release(permit)
            raise error
        self.release(permit)
        return result

    async def __aenter__(self) -> Bulkhead:
        permit = await self._acquire_async()
        task = asyncio.current_task()
        assert task is not None
        calls = self._inflight.calls(task.get_loop())
        calls.enter(permit, task)
        token = self._holding.set(True)
        self._scopes.set((*self._scopes.get(), (permit, calls, token)))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack = self._scopes.get()
        if not stack:
            raise RuntimeError(
                f"bulkhead {self.name!r}: async exit without a matching enter in this task"
            )
        permit, calls, token = stack[-1]
        self._scopes.set(stack[:-1])
        self._holding.reset(token)
        if calls.leave(permit, exc):
            error = self._timed_out_error(permit)
            self.release(permit, exc)
            raise error from exc
        self.release(permit, exc)

    def __repr__(self) -> str:
        s = super().get_stats()
        return (
            f"<Bulkhead {self.name!r} {s['active_calls']}/{s['current_limit']} active, "
            f"{s['queued_calls']} queued>"
        )


def _is_awaitable(value: object) -> bool:
    return isinstance(value, Awaitable)


ResourceBulkhead = Bulkhead
