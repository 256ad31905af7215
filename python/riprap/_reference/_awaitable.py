"""Reference twin of `rust/py/src/awaitable.rs`: `Coroutine`.

A `Coroutine` is an awaited call of a riprap-decorated coroutine function.

It drives the user's coroutine (forwarding `send`, `throw` and `close`) and lets a guard act
before the first step (`start`: admit) and after the last (`returned` / `raised`: record the
outcome). A guard may hand the rest of the await over to a Python continuation (a retry that
must sleep); from then on the continuation's outcome is the await's. The guard runs when the
coroutine is first resumed, not when the function is called; a coroutine dropped half-way gives
back what its guard holds (`abandon`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Coroutine", "Drive", "Guard", "Handover", "close_quietly"]

NOT_STARTED, GUARDED, HANDED_OVER, DONE = range(4)


class Drive:
    """A guard's answer: drive `awaitable` next, and report how it ends to the guard."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Any) -> None:
        self.awaitable = awaitable


class Handover:
    """A guard's answer: continue the await as an await of `coroutine` (its end is final)."""

    __slots__ = ("coroutine",)

    def __init__(self, coroutine: Any) -> None:
        self.coroutine = coroutine


class Guard(Protocol):
    """The work around one awaited call."""

    def start(self, inner: Any) -> Any:
        """When first resumed, with the user's coroutine: usually `Drive(inner)`.

        `Handover` continues the await in a Python coroutine; any other value ends the await
        with that result. Raising ends the await; a guard that does so without having driven
        `inner` closes it first (`close_quietly`).
        """

    def returned(self, value: Any) -> Any:
        """What was driven returned `value`: the await's result, `Drive` or `Handover`."""

    def raised(self, exc: BaseException) -> Any:
        """It raised `exc` (called while `exc` is handled): raise, `Drive` or `Handover`."""

    def abandon(self) -> None:
        """The coroutine was dropped before the end: give back what was taken."""


def close_quietly(coroutine: Any) -> None:
    """Close a coroutine that will never be driven (no "never awaited" warning)."""
    coroutine.close()


class _Yield:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Return:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Coroutine:
    """An awaited call of a riprap-decorated coroutine function."""

    __slots__ = ("_func", "_guard", "_inner", "_phase", "_running")

    def __init__(self, func: Callable[..., Any], inner: Any, guard: Guard) -> None:
        self._func = func
        self._inner = inner
        self._guard = guard
        self._phase = NOT_STARTED
        self._running = False

    def __await__(self) -> Coroutine:
        return self

    def __iter__(self) -> Coroutine:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        """Resumes with `value`: what the coroutine yields next, or `StopIteration(result)`."""
        return self._resume(value, None)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        """Raises an exception inside the coroutine (how a task's cancellation arrives)."""
        if isinstance(typ, type):
            exc = val if isinstance(val, typ) else typ() if val is None else typ(val)
        else:
            exc = typ
        if not isinstance(exc, BaseException):
            raise TypeError("exceptions must derive from BaseException")
        if tb is not None:
            exc = exc.with_traceback(tb)
        return self._resume(None, exc)

    def close(self) -> None:
        """Stops the coroutine: `GeneratorExit` is thrown in, and must not be swallowed."""
        if self._phase == DONE:
            return
        if self._phase == NOT_STARTED:
            self._phase = DONE
            self._close_inner()
            return
        try:
            self._resume(None, GeneratorExit())
        except (GeneratorExit, StopIteration):
            return
        raise RuntimeError("riprap coroutine ignored GeneratorExit")

    def _close_inner(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()

    def _resume(self, value: Any, exc: BaseException | None) -> Any:
        if self._running:
            raise ValueError("riprap coroutine already executing")
        self._running = True
        try:
            return self._step(value, exc)
        finally:
            self._running = False

    def _step(self, value: Any, exc: BaseException | None) -> Any:
        if self._phase == DONE:
            raise RuntimeError("cannot reuse already awaited coroutine")
        if self._phase == NOT_STARTED:
            if exc is not None:
                # Thrown into before it ran: nothing was admitted; the user's coroutine never
                # starts.
                self._phase = DONE
                self._close_inner()
                raise exc
            self._phase = GUARDED
            inner, self._inner = self._inner, None
            try:
                answer = self._guard.start(inner)
            except BaseException:
                self._phase = DONE
                raise
            if isinstance(answer, Handover):
                self._phase, self._inner, value = HANDED_OVER, answer.coroutine, None
            elif isinstance(answer, Drive):
                self._inner, value = answer.awaitable, None
            else:  # the guard ended the await before anything was driven
                self._phase = DONE
                raise StopIteration(answer)
        while True:
            outcome = self._drive(value, exc)
            if isinstance(outcome, _Yield):
                return outcome.value
            if isinstance(outcome, Handover):
                self._phase, self._inner = HANDED_OVER, outcome.coroutine
                value, exc = None, None
                continue
            if isinstance(outcome, Drive):
                self._inner = outcome.awaitable
                value, exc = None, None
                continue
            self._phase, self._inner = DONE, None
            raise StopIteration(outcome.value)

    def _drive(self, value: Any, exc: BaseException | None) -> Any:
        """One step of the inner awaitable; when it finished, the guard's answer.

        Returns `_Yield`, `_Return`, `Drive` or `Handover`, or raises what the await raises.
        """
        try:
            yielded = self._inner.send(value) if exc is None else self._inner.throw(exc)
        except StopIteration as stop:
            result = stop.value
        except BaseException as failure:
            if self._phase == HANDED_OVER:
                self._phase, self._inner = DONE, None
                raise
            try:
                # Inside the `except` block: what the guard raises carries `failure` as its
                # context, as in the Rust twin (which makes it the handled exception).
                return self._guard.raised(failure)
            except BaseException:
                self._phase, self._inner = DONE, None
                raise
        else:
            return _Yield(yielded)
        if self._phase == HANDED_OVER:
            return _Return(result)
        try:
            answer = self._guard.returned(result)
        except BaseException:
            self._phase, self._inner = DONE, None
            raise
        return answer if isinstance(answer, (Drive, Handover)) else _Return(answer)

    def __getattr__(self, name: str) -> Any:
        # `__name__` and `__qualname__` are the wrapped function's (asyncio's task reprs read
        # them); a property cannot be called `__qualname__` in a class body.
        if name in ("__name__", "__qualname__"):
            return getattr(self._func, name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"<riprap.Coroutine {getattr(self._func, '__qualname__', '?')}>"

    def __del__(self) -> None:
        if self._phase == GUARDED:
            self._guard.abandon()
