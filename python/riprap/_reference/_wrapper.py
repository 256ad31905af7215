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

__all__ = ["CallEngine", "NativeWrapper"]


class CallEngine(Protocol):
    """What a wrapper's engine provides (the binding's `CallEngine` trait)."""

    def _run(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run one call of `func` under this engine."""


E = TypeVar("E", bound=CallEngine)


class NativeWrapper(Generic[E]):
    """Base of the reference's decorated-function objects (`RetryCall`, `BreakerCall`, ...)."""

    __slots__ = ("__dict__", "__weakref__", "_engine", "_func")
    _kind: ClassVar[str]

    def __init__(self, func: Callable[..., Any], engine: E) -> None:
        self._func = func
        self._engine = engine

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._engine._run(self._func, args, kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(cast(Callable[..., Any], self), instance)

    def __repr__(self) -> str:
        return f"<riprap.{self._kind} wrapping {self._func!r}>"
