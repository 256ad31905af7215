"""Argument checks, in one place: shared by the public layer and the pure-Python reference.

The Rust binding's twin is `rust/py/src/convert.rs`; both produce the same messages, so a bad
argument reads the same on both backends. Value checks of configuration (ranges, NaN, inf) live
in the cores; these helpers make sure a field has the right type, naming the field and the type
it got, and convert call arguments (`n=`, `timeout=`, `on_limit=`, ...) the way the binding does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = [
    "U64_MAX",
    "boolean",
    "callable_or_none",
    "check_float",
    "check_int",
    "choice",
    "cost",
    "exception_types",
    "int_at_least",
    "int_in",
    "integer",
    "max_wait",
    "name",
    "no_storage",
    "number",
    "on_limit",
    "optional_number",
    "py_float",
    "required_name",
    "secs_to_nanos",
    "storage_error_mode",
    "strings",
    "text",
]

U64_MAX = (1 << 64) - 1


def _type_name(value: object) -> str:
    return type(value).__name__


def number(field: str, value: object) -> float:
    """A number of seconds (or any real): `int` or `float`, never `bool`."""
    if isinstance(value, bool):
        raise TypeError(f"{field} must be a number, got bool")
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"{field} must be a finite number, got {value}") from None
    try:
        return float(value.__float__())  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        raise TypeError(f"{field} must be a number, got {_type_name(value)}") from None


def optional_number(field: str, value: object) -> float | None:
    """`None` or a number."""
    return None if value is None else number(field, value)


def integer(field: str, value: object) -> int:
    """An `int`, never `bool`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, got {_type_name(value)}")
    return value


def boolean(field: str, value: object) -> bool:
    """A `bool`."""
    if not isinstance(value, bool):
        raise TypeError(f"{field} must be a bool, got {_type_name(value)}")
    return value


def callable_or_none(field: str, value: object) -> Callable[..., Any] | None:
    """`None` or a callable."""
    if value is not None and not callable(value):
        raise TypeError(f"{field} must be callable or None, got {_type_name(value)}")
    return value


def exception_types(field: str, value: object) -> tuple[type[BaseException], ...]:
    """An exception class or an iterable of them, as a tuple."""
    items: Iterable[Any] = (
        (value,) if isinstance(value, type) else _iterable(field, value)
    )
    out = tuple(items)
    for t in out:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(f"{field} must hold exception classes, got {t!r}")
    return out


def strings(field: str, value: object) -> tuple[str, ...]:
    """An iterable of `str` (a bare `str` is refused: it would iterate by character)."""
    if isinstance(value, str):
        raise TypeError(f"{field} must be a tuple of str, got a single str")
    out = tuple(_iterable(field, value))
    for s in out:
        if not isinstance(s, str):
            raise TypeError(f"{field} must hold str, got {_type_name(s)}")
    return out


def _iterable(field: str, value: object) -> Iterable[Any]:
    try:
        return iter(value)  # type: ignore[call-overload, no-any-return]
    except TypeError:
        raise TypeError(f"{field} must be a tuple, got {_type_name(value)}") from None


def py_float(value: float) -> str:
    """A float as the messages print it (Python's `repr`)."""
    return repr(float(value))


def check_float(field: str, value: float, minimum: float, inclusive: bool) -> float:
    """Finite and `>= minimum` (`> minimum` when not inclusive); mirrors the core's check."""
    if not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {py_float(value)}")
    if (value < minimum) if inclusive else (value <= minimum):
        op = ">=" if inclusive else ">"
        raise ValueError(
            f"{field} must be {op} {py_float(minimum)}, got {py_float(value)}"
        )
    return value


def check_int(field: str, value: int, minimum: int) -> int:
    """`>= minimum`; mirrors the core's check."""
    if value < minimum:
        raise ValueError(f"{field} must be >= {minimum}, got {value}")
    return value


def secs_to_nanos(seconds: float) -> int:
    """Seconds to nanoseconds exactly as the core does: round half up, saturating."""
    x = seconds * 1e9 + 0.5
    if x != x:  # NaN  # noqa: PLR0124
        return 0
    if x >= 18446744073709551616.0:
        return U64_MAX
    return max(0, math.floor(x))


def int_at_least(field: str, value: object, minimum: int) -> int:
    """A whole count `>= minimum`: an `int`, never `bool`; above 2**64 - 1 it saturates."""
    return min(check_int(field, integer(field, value), minimum), U64_MAX)


def int_in(field: str, value: object, minimum: int, maximum: int) -> int:
    """A whole count in `minimum..=maximum`: an `int`, never `bool`."""
    n = check_int(field, integer(field, value), minimum)
    if n > maximum:
        raise ValueError(f"{field} must be <= {maximum}, got {n}")
    return n


def choice(field: str, value: object, expected: tuple[str, ...]) -> str:
    """A `str` that must be one of `expected` (the core's message for unknown names)."""
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, got {_type_name(value)}")
    if value not in expected:
        listed = ", ".join(f"'{e}'" for e in expected)
        raise ValueError(f"{field} must be one of {listed}, got '{value}'")
    return value


def required_name(value: object) -> str:
    """A primitive's `name` where one is required: a `str`."""
    if isinstance(value, str):
        return value
    raise TypeError(f"name must be a str, got {_type_name(value)}")


def text(field: str, value: object) -> str:
    """An id that names something in logs and statistics: a `str` that is valid as UTF-8."""
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, got {_type_name(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{field} must be valid Unicode (no lone surrogates), got {value!r}"
        ) from None
    return value


def name(value: object) -> str | None:
    """`name=`: a `str` or None."""
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"name must be a str or None, got {_type_name(value)}")


def on_limit(value: object) -> bool:
    """`on_limit=`: "wait" (False, the default; None means the default) or "raise" (True)."""
    if value is None:
        return False
    return choice("on_limit", value, ("wait", "raise")) == "raise"


def max_wait(field: str, value: object) -> int | None:
    """A wait bound such as `timeout=`: None (no bound) or seconds >= 0, as nanoseconds."""
    if value is None:
        return None
    return secs_to_nanos(check_float(field, number(field, value), 0.0, True))


class _Quota(Protocol):
    interval: int

    def cost(self, n: int) -> int: ...


def cost(quota: _Quota, n: object) -> int:
    """`n=` of a limiter call as nanoseconds: a whole number of tokens, 1 <= n <= burst.

    Floats (NaN included) are a ValueError, as in the core; other types a TypeError.
    """
    if n is None:
        return quota.interval
    if isinstance(n, bool):
        raise TypeError("n must be an int, got bool")
    if isinstance(n, int):
        return quota.cost(n)
    if isinstance(n, float):
        raise ValueError(f"n must be a whole number of tokens (an int), got {n!r}")  # noqa: TRY004
    raise TypeError(f"n must be an int, got {_type_name(n)}")


STORAGE_ERROR_MODES = ("local", "fail_open", "fail_closed")


def storage_error_mode(value: object) -> str:
    """`on_storage_error=`: "local" (the default), "fail_open" or "fail_closed"."""
    if value is None:
        return "local"
    return choice("on_storage_error", value, STORAGE_ERROR_MODES)


def no_storage(what: str, storage: object, on_storage_error: object) -> None:
    """`storage=` and `on_storage_error=`: the mode is validated, and storage is refused.

    The core keeps in-process state only; `riprap.RateLimiter(..., storage=...)` builds the
    shared (Redis) limiter, whose core part is its local fallback.
    """
    storage_error_mode(on_storage_error)
    if storage is not None:
        raise NotImplementedError(
            f"the core {what} keeps in-process state only: use "
            f"riprap.{what}(..., storage=...)"
        )
