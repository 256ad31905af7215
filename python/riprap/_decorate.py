"""Shared decorator plumbing: what every riprap decorator checks before wrapping a callable.

A decorator never changes a function's colour (sync stays sync, `async def` stays a coroutine
function), refuses generator functions at decoration time (their errors arrive while they are
iterated, after the call returned), and passes through `staticmethod`/`classmethod` objects.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Any

__all__ = [
    "check_callable",
    "decorate",
    "is_async",
    "name_of",
    "native_coroutine_function",
    "refuse_generators",
    "rewrap_descriptor",
]


def name_of(func: Callable[..., Any]) -> str:
    """`module.qualname` of a callable, for log lines and default operation ids."""
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or repr(func)
    return f"{module}.{qualname}"


def is_async(func: Callable[..., Any]) -> bool:
    """Whether calling `func` returns a coroutine (functions, partials, async callables)."""
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(type(func), "__call__", None)  # noqa: B004 - a callable object's own method
    return (
        not inspect.isfunction(func)
        and not inspect.ismethod(func)
        and call is not None
        and inspect.iscoroutinefunction(call)
    )


def refuse_generators(func: Callable[..., Any], what: str) -> None:
    """Raise TypeError for generator functions, whose failures happen after the call returns."""
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"{what} cannot wrap the generator function {name_of(func)}: its errors are "
            "raised while it is iterated, after the call has returned. Wrap the code that "
            "consumes it instead."
        )


def rewrap_descriptor(func: Any, decorate: Callable[[Any], Any]) -> Any:
    """`staticmethod`/`classmethod` objects: decorate the function inside and wrap it again.

    Returns None when `func` is not such a descriptor.
    """
    if isinstance(func, (staticmethod, classmethod)):
        return type(func)(decorate(func.__func__))
    return None


def check_callable(func: object, what: str) -> None:
    """TypeError unless `func` is callable."""
    if not callable(func):
        raise TypeError(f"{what} needs a callable, got {type(func).__name__}")


def decorate(
    func: Any,
    what: str,
    *,
    native: Callable[[Callable[..., Any]], Any],
    coroutine: Callable[[Callable[..., Any]], Callable[..., Any]],
) -> Any:
    """Every riprap decorator's one sequence for wrapping `func`.

    `staticmethod`/`classmethod` objects are unwrapped and wrapped again; anything not callable
    and generator functions are refused; an async callable gets `coroutine(func)` (a coroutine
    function); anything else gets `native(func)` (a native wrapper object), which is given
    `func`'s metadata (`__wrapped__`, `__name__`, `__doc__`, ...).
    """
    rewrapped = rewrap_descriptor(
        func, lambda f: decorate(f, what, native=native, coroutine=coroutine)
    )
    if rewrapped is not None:
        return rewrapped
    check_callable(func, what)
    refuse_generators(func, what)
    if is_async(func):
        return coroutine(func)
    wrapper = native(func)
    functools.update_wrapper(wrapper, func)
    return wrapper


def _coroutine_code(func: Any) -> tuple[types.CodeType, Any] | None:
    """The code object (with its function) that makes `func` a coroutine function, if any."""
    f = func
    while isinstance(f, functools.partial):
        f = f.func
    if inspect.ismethod(f):
        f = f.__func__
    code = getattr(f, "__code__", None)
    if not isinstance(code, types.CodeType):
        f = getattr(type(f), "__call__", None)  # noqa: B004 - an async callable object
        code = getattr(f, "__code__", None)
    if isinstance(code, types.CodeType) and code.co_flags & inspect.CO_COROUTINE:
        return code, f
    return None


def native_coroutine_function(wrapper: Any, func: Callable[..., Any]) -> bool:
    """Make a native async wrapper look like the coroutine function it wraps.

    `functools.update_wrapper` gives it `__wrapped__`, `__name__`, `__doc__`, ...; then
    `inspect.iscoroutinefunction(wrapper)` must be true, as for the `async def` it replaces.
    Python 3.12+ has `inspect.markcoroutinefunction` for that; on 3.11, `inspect` accepts a
    function-like object (as it does Cython's compiled functions) whose `__code__` has the
    coroutine flag, so the wrapper gets the wrapped function's `__code__`, `__defaults__` and
    `__kwdefaults__`. Returns False (and changes nothing) when `func` has no such code object;
    the caller then uses a Python `async def` wrapper instead.
    """
    found = _coroutine_code(func)
    if found is None or not isinstance(getattr(func, "__name__", None), str):
        # Partials and async callable objects have no `__name__` to lend the wrapper, and
        # without one `inspect` does not see a function.
        return False
    functools.update_wrapper(wrapper, func)
    markcoroutinefunction = getattr(inspect, "markcoroutinefunction", None)
    if markcoroutinefunction is not None:  # Python 3.12+
        markcoroutinefunction(wrapper)
    else:
        code, owner = found
        wrapper.__code__ = code
        wrapper.__defaults__ = getattr(owner, "__defaults__", None)
        wrapper.__kwdefaults__ = getattr(owner, "__kwdefaults__", None)
    return True
