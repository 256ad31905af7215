"""Reference twin of what `rust/py/src/vectorcall.rs` gives every native wrapper.

A wrapper keeps its state in slots, like the Rust object's fields: `functools.update_wrapper`
copies the wrapped object's `__dict__` into the wrapper's, and when the wrapped object is itself a
wrapper that copy must not replace the outer wrapper's function or policy. It binds as a method
like a function does, and its repr names what it wraps.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, ClassVar, cast

__all__ = ["NativeWrapper"]


class NativeWrapper:
    """Base of the reference's decorated-function objects (`RetryCall`, `BreakerCall`, ...)."""

    __slots__ = ("__dict__", "__weakref__", "_func")
    _kind: ClassVar[str]

    def __init__(self, func: Callable[..., Any]) -> None:
        self._func = func

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(cast(Callable[..., Any], self), instance)

    def __repr__(self) -> str:
        return f"<riprap.{self._kind} wrapping {self._func!r}>"
