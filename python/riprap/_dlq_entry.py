"""Dead-letter entries: what a failed call looks like, how it is stored and how it runs again.

Arguments are stored as JSON. JSON cannot hold every Python object, and it turns tuples into
lists and dict keys into strings; arguments it cannot hold are refused with a TypeError that
names the argument and its type, unless the queue was opened with `allow_pickle=True`. Pickle
can hold almost anything, but loading a pickle runs code chosen by whoever wrote it: use it only
for a queue file that nobody else can write. A queue opened without `allow_pickle` never loads
a pickled entry: its arguments show as a `SealedPayload`.

An operation is replayed without a handler only if it has the form `module:qualname`; the module
is imported and the attribute path followed, and nothing else is ever evaluated.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import importlib
import inspect
import json
import pickle
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "REPLAYING",
    "DeadLetter",
    "SealedPayload",
    "call_entry",
    "decode",
    "describe_error",
    "encode",
    "encode_metadata",
    "operation_of",
    "resolve",
    "run_one",
    "run_one_async",
]

#: Set while an entry is replayed: a failing replay is recorded on the entry (replay_count,
#: last_error), so `riprap.dead_letter` wrappers reached by it do not record it a second time.
REPLAYING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "riprap_dead_letter_replaying", default=False
)


class SealedPayload:
    """The arguments of a pickled entry, not loaded: the queue was opened without pickle."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __repr__(self) -> str:
        return f"<pickled arguments, {self.size} bytes: not loaded without allow_pickle=True>"


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """One failed call kept in a `DeadLetterQueue`.

    Attributes:
        id: The entry's id (ids grow and are never reused).
        operation: What failed: `module:qualname` of the function, or any name the caller
            chose.
        args: The positional arguments (as JSON gives them back: lists for tuples).
        kwargs: The keyword arguments.
        error_type: The exception's class, `module.qualname` (builtins without a module).
        error_message: `str()` of the exception.
        attempts: How many attempts the caller made before it gave up.
        created_at: When the entry was added: wall-clock seconds since the epoch (UTC).
        replay_count: Failed replays so far.
        last_error: The error of the last failed replay (`Type: message`), or None.
        metadata: The caller's extra JSON data, or None.
        encoding: How the arguments are stored: "json" or "pickle".
    """

    id: int
    operation: str
    args: tuple[Any, ...] | SealedPayload
    kwargs: dict[str, Any] | SealedPayload
    error_type: str | None
    error_message: str | None
    attempts: int
    created_at: float
    replay_count: int
    last_error: str | None
    metadata: dict[str, Any] | None
    encoding: str = "json"

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain JSON-ready data (sealed arguments become None)."""
        out = dataclasses.asdict(self)
        for name in ("args", "kwargs"):
            value = getattr(self, name)
            out[name] = None if isinstance(value, SealedPayload) else value
        out["args"] = None if out["args"] is None else list(out["args"])
        return out


def operation_of(func: Callable[..., Any]) -> str:
    """The operation name a function is recorded under: `module:qualname`."""
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or getattr(
        func, "__name__", repr(func)
    )
    return f"{module}:{qualname}"


def _json_error(where: str, value: object, exc: Exception) -> TypeError:
    return TypeError(
        f"dead-letter argument {where} ({type(value).__name__}) cannot be stored as JSON: "
        f"{exc}. Store JSON-friendly arguments, or open the queue with allow_pickle=True "
        "(only for a queue file nobody else can write: loading a pickle runs code)"
    )


def encode(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], allow_pickle: bool
) -> tuple[str, str | bytes]:
    """("json", text) or, when JSON cannot hold them and pickle is allowed, ("pickle", bytes).

    Raises:
        TypeError: An argument JSON cannot hold (named, with its type), and no pickle.
    """
    try:
        return "json", json.dumps(
            {"args": args, "kwargs": kwargs}, separators=(",", ":")
        )
    except (TypeError, ValueError, RecursionError) as exc:
        if allow_pickle:
            try:
                return "pickle", pickle.dumps(
                    (args, dict(kwargs)), protocol=pickle.HIGHEST_PROTOCOL
                )
            except Exception as pexc:
                raise TypeError(
                    f"dead-letter arguments cannot be stored as JSON ({exc}) nor pickled "
                    f"({type(pexc).__name__}: {pexc})"
                ) from pexc
        # Name the first argument JSON refuses.
        items = [(f"args[{i}]", a) for i, a in enumerate(args)]
        items += [(f"kwargs[{k!r}]", a) for k, a in kwargs.items()]
        for where, value in items:
            try:
                json.dumps(value)
            except (TypeError, ValueError, RecursionError) as item_exc:
                raise _json_error(where, value, item_exc) from None
        raise TypeError(
            f"dead-letter arguments cannot be stored as JSON: {exc}"
        ) from None


def decode(encoding: str, payload: Any, allow_pickle: bool) -> tuple[Any, Any]:
    """(args, kwargs) from a stored payload; pickles only with `allow_pickle`."""
    if encoding == "json":
        data = json.loads(payload)
        return tuple(data["args"]), data["kwargs"]
    if encoding == "pickle":
        if not allow_pickle:
            sealed = SealedPayload(len(payload))
            return sealed, sealed
        args, kwargs = pickle.loads(payload)  # the caller opted into pickle
        return tuple(args), kwargs
    raise ValueError(f"unknown argument encoding {encoding!r}")


def encode_metadata(metadata: object) -> str | None:
    """Metadata as JSON text (a dict, or None), else TypeError naming it."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise TypeError(
            f"metadata must be a dict or None, got {type(metadata).__name__}"
        )
    try:
        return json.dumps(dict(metadata), separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"metadata cannot be stored as JSON: {exc}") from None


def describe_error(error: object) -> tuple[str | None, str | None]:
    """(error_type, error_message) of an exception, a message string, or None."""
    if error is None:
        return None, None
    if isinstance(error, str):
        return None, error
    if not isinstance(error, BaseException):
        raise TypeError(
            f"error must be an exception, a str or None, got {type(error).__name__}"
        )
    cls = type(error)
    module = cls.__module__
    name = cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
    try:
        message = str(error)
    except Exception:  # a broken __str__ must not lose the entry
        message = f"<{cls.__name__} with an unprintable message>"
    return name, message


_OPERATION = re.compile(
    r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
)


def resolve(operation: str) -> Callable[..., Any]:
    """The callable `module:qualname` names: import the module, follow the attributes.

    Raises:
        LookupError: `operation` has another form (nothing is evaluated), the module cannot
            be imported, or the attribute path does not lead to a callable.
    """
    if not _OPERATION.fullmatch(operation):
        raise LookupError(
            f"operation {operation!r} is not an importable 'module:qualname' (a function "
            "defined inside another one has no importable name); replay it with a handler"
        )
    module_name, qualname = operation.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise LookupError(
            f"cannot import module {module_name!r} for operation {operation!r} "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LookupError(
                f"operation {operation!r}: module {module_name!r} has no {qualname!r}"
            ) from None
    if not callable(obj):
        raise LookupError(  # noqa: TRY004 - "cannot find a callable", like the cases above
            f"operation {operation!r} is a {type(obj).__name__}, not a callable"
        )
    return obj  # type: ignore[no-any-return]


# --- running an entry again -------------------------------------------------------------


def _failure(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable message>"
    return f"{type(exc).__qualname__}: {message}" if message else type(exc).__qualname__


class _ReplayMisuseError(TypeError):
    """A programming error during a replay: raised to the caller, not recorded on the entry."""


def call_entry(entry: DeadLetter, allow_pickle: bool = False) -> object:
    """What a replay without a handler does: import the operation, call it with the arguments.

    Raises:
        LookupError: The operation cannot be imported, or the arguments are sealed pickles.
    """
    args, kwargs = entry.args, entry.kwargs
    if isinstance(args, SealedPayload) or isinstance(kwargs, SealedPayload):
        raise LookupError(  # noqa: TRY004 - "cannot load what to call", like resolve()
            "the arguments are pickled, and the queue was opened without allow_pickle=True"
        )
    func = resolve(entry.operation)
    return func(*args, **kwargs)


def run_one(
    entry: DeadLetter,
    handler: Callable[[DeadLetter], object] | None,
    allow_pickle: bool,
) -> str | None:
    """None if the entry's call succeeded, else its error as `last_error` text."""
    token = REPLAYING.set(True)
    try:
        result = (
            handler(entry) if handler is not None else call_entry(entry, allow_pickle)
        )
        if inspect.isawaitable(result):
            result = _run_awaitable(result)
    except _ReplayMisuseError:
        raise
    except Exception as exc:
        return _failure(exc)
    finally:
        REPLAYING.reset(token)
    return None


async def run_one_async(
    entry: DeadLetter,
    handler: Callable[[DeadLetter], object] | None,
    allow_pickle: bool,
) -> str | None:
    token = REPLAYING.set(True)
    try:
        result = (
            handler(entry) if handler is not None else call_entry(entry, allow_pickle)
        )
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        return _failure(exc)
    finally:
        REPLAYING.reset(token)
    return None


def _run_awaitable(awaitable: Any) -> object:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise _ReplayMisuseError(
            "a replayed call returned an awaitable inside a running event loop, where "
            "replay() cannot run it: use `await queue.replay_async()`"
        )

    async def wait() -> object:
        return await awaitable

    return asyncio.run(wait())
