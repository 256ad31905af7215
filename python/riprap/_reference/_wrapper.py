"""Reference twin of `rust/py/src/call.rs`: the wrapper every decorator puts around a sync function.

A wrapper holds the function and an *engine* (a `RetryEngine`, a `BreakerEngine`, a
`RateLimiter`, ...); calling it runs `engine._run(func, args, kwargs)`, the twin of the binding's
`CallEngine::call`. It keeps its state in slots, like the Rust object's fields:
`functools.update_wrapper` copies the wrapped object's `__dict__` into the wrapper's, and when the
wrapped object is itself a wrapper that copy must not replace the outer wrapper's function or
engine. It binds as a method like a function does, and its repr names what it wraps.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

__all__ = ["AsyncCallEngine", "AsyncNativeWrapper", "CallEngine", "NativeWrapper"]


class CallEngine(Protocol):
    """What a wrapper's engine provides (the binding's `CallEngine` trait)."""

    def _run(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run one call of `func` under this engine."""


class AsyncCallEngine(Protocol):
    """What an async wrapper's engine provides (the binding's `AsyncCallEngine` trait)."""

    def _arun(
        self,
        func: Callable[..., Any],
        slow: Callable[..., Any] | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """One call: what the caller awaits (a `Coroutine`, or a coroutine of its own)."""


E = TypeVar("E", bound=CallEngine)
A = TypeVar("A", bound=AsyncCallEngine)


class _Wrapper:
    """What every decorated-function object shares: slots, method binding, repr."""

    __slots__ = ("__dict__", "__weakref__", "_engine", "_func")
    _kind: ClassVar[str]
    _func: Callable[..., Any]

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(cast(Callable[..., Any], self), instance)

    def __repr__(self) -> str:
        return f"<riprap.{self._kind} wrapping {self._func!r}>"


class NativeWrapper(_Wrapper, Generic[E]):
    """Base of the reference's sync wrappers (`RetryCall`, `BreakerCall`, ...)."""

    __slots__ = ()
    _engine: E

    def __init__(self, func: Callable[..., Any], engine: E) -> None:
        self._func = func
        self._engine = engine

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._engine._run(self._func, args, kwargs)


class AsyncNativeWrapper(_Wrapper, Generic[A]):
    """Base of the reference's async wrappers (`RetryAsyncCall`, `BreakerAsyncCall`, ...)."""

    __slots__ = ("_slow",)
    _engine: A

    def __init__(
        self,
        func: Callable[..., Any],
        engine: A,
        slow: Callable[..., Any] | None = None,
    ) -> None:
        self._func = func
        self._engine = engine
        self._slow = slow

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._engine._arun(self._func, self._slow, args, kwargs)
