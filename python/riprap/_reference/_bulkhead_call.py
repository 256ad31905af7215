"""Reference twin of `rust/py/src/bulkhead/call.rs`: `BulkheadCall`, `BulkheadAsyncCall`.

`BulkheadAsyncCall`'s calls are `Coroutine`s under a `BulkheadGuard`: while a slot is free the
guard takes it, runs the call's first step with the thread and the task marked as holding it,
and, when that step ends the call, hands the slot back. A call that must wait for a slot, one
that suspends, and one that overran its timeout on a manual clock go on in the continuation
(`riprap._bulkhead_async.continuation`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._validate import secs_to_nanos
from ._awaitable import Handover
from ._bulkhead import BulkheadEngine, BulkheadPermit, _hold, _unhold
from ._clock import ManualClock
from ._wrapper import AsyncNativeWrapper, NativeWrapper

__all__ = ["BulkheadAsyncCall", "BulkheadCall", "BulkheadGuard"]


class BulkheadCall(NativeWrapper[BulkheadEngine]):
    """A sync function guarded by a bulkhead."""

    __slots__ = ()
    _kind = "BulkheadCall"

    @property
    def bulkhead_engine(self) -> BulkheadEngine:
        """The bulkhead this function runs under."""
        return self._engine


class BulkheadAsyncCall(AsyncNativeWrapper[BulkheadEngine]):
    """A coroutine function guarded by a bulkhead."""

    __slots__ = ()
    _kind = "BulkheadAsyncCall"

    @property
    def bulkhead_engine(self) -> BulkheadEngine:
        """The bulkhead this function runs under."""
        return self._engine


class BulkheadGuard:
    """A bulkhead's part in one awaited call (twin of the binding's `BulkheadGuard`)."""

    __slots__ = ("_engine", "_slow")

    def __init__(self, engine: BulkheadEngine, slow: Callable[..., Any]) -> None:
        self._engine = engine
        self._slow = slow

    def start(self, inner: Any) -> Any:
        """Take a free slot and run the first step, or hand the call over."""
        engine = self._engine
        core = engine._core
        slot = core.try_acquire(engine._now)
        if slot is None:
            return Handover(self._slow("acquire", inner))
        start = engine._now()
        try:
            token = engine._mark_task()
        except BaseException as exc:
            _close(inner)
            return self._ended(slot, start, None, exc)
        _hold(core.id, None)
        error: BaseException | None = None
        try:
            yielded = inner.send(None)
        except StopIteration as stop:
            done, value = True, stop.value
        except BaseException as e:
            done, value, error = True, None, e
        else:
            done, value = False, yielded
        finally:
            _unhold(core.id)
        if not done:
            permit = BulkheadPermit(slot)
            return Handover(
                self._slow("suspended", inner, value, permit, start / 1e9, token)
            )
        try:
            engine._unmark_task(token)
        except BaseException as e:
            value, error = None, e
        return self._ended(slot, start, value, error)

    def _ended(
        self, slot: Any, start: int, value: Any, exc: BaseException | None
    ) -> Any:
        engine = self._engine
        if (
            isinstance(engine._clock, ManualClock)
            and (exc is None or isinstance(exc, Exception))
            and engine._now() - start >= secs_to_nanos(engine._config.timeout)
        ):
            return self._slow("ended", BulkheadPermit(slot), start / 1e9, value, exc)
        if not engine._core.try_release(slot):
            engine._settle(slot, exc)
        if exc is not None:
            raise exc
        return value

    def returned(self, value: Any) -> Any:
        """Never asked: `start` ends the call or hands it over."""
        return value

    def raised(self, exc: BaseException) -> Any:
        """Never asked (as `returned`)."""
        raise exc

    def abandon(self) -> None:
        """Nothing held between steps: `start` settles or hands over its slot."""


def _close(inner: Any) -> None:
    close = getattr(inner, "close", None)
    if close is not None:
        close()
