"""The `dead_letter` decorator: record a call that finally failed, then re-raise its error.

Put it outside retries (`@dead_letter(queue)` above `@retry(...)`), so only calls whose retries
ran out are recorded. The caller always gets the original exception, with its traceback: if the
queue itself fails (disk full, locked, arguments JSON cannot hold), the queue's error is logged
on logger "riprap" and attached to the original exception as a note, and the original is
raised all the same. Control-flow exceptions (`CancelledError`, `KeyboardInterrupt`,
`SystemExit`, `GeneratorExit`) are never recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._decorate import decorate
from ._dlq import DeadLetterQueue
from ._dlq_entry import REPLAYING, operation_of

__all__ = ["dead_letter"]

logger = logging.getLogger("riprap")

F = TypeVar("F", bound=Callable[..., Any])


def _record(
    queue: DeadLetterQueue,
    operation: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    error: Exception,
) -> None:
    """Put the failed call in the queue; never raises an `Exception` of its own."""
    try:
        queue.put(operation, args, kwargs, error=error, attempts=1)
    except Exception as problem:
        _not_recorded(queue, operation, error, problem)


def _not_recorded(
    queue: DeadLetterQueue, operation: str, error: Exception, problem: Exception
) -> None:
    logger.error(
        "riprap.dead_letter: could not record a failed call of %s in %s: %s",
        operation,
        queue.path,
        problem,
    )
    # An exception that refuses notes (a read-only __notes__) is still re-raised.
    with contextlib.suppress(Exception):
        error.add_note(
            f"riprap.dead_letter: this failure was not recorded in the dead-letter queue "
            f"{queue.path}: {type(problem).__name__}: {problem}"
        )


def dead_letter(
    queue: DeadLetterQueue, operation: str | None = None
) -> DeadLetterDecorator:
    """Record calls that fail in a dead-letter queue, then re-raise their own exception.

    Example:
        `@riprap.dead_letter(queue)` above `@riprap.retry(...)`: a call whose retries ran out
        is recorded with its arguments and error, and can be replayed later with
        `queue.replay()` or `riprap dlq replay`.

    Works on sync and async functions and methods (their colour, `__wrapped__`, name and
    signature are kept); generator functions are refused. The arguments must be JSON data (or
    the queue must allow pickle): on a method, `self` is an argument too, so record a function
    that takes data instead. The entry's `attempts` is 1 (the decorated call; retries inside it
    are not visible to the decorator). While `replay()` runs an entry, a failure that reaches
    this decorator again is not recorded a second time: the replay records it on the entry.

    Args:
        queue: The `DeadLetterQueue` to record in.
        operation: The name entries are recorded under (default: `module:qualname` of the
            function, which `replay()` can import).

    Returns:
        The decorator.
    """
    if not isinstance(queue, DeadLetterQueue):
        raise TypeError(f"queue must be a DeadLetterQueue, got {type(queue).__name__}")
    if operation is not None and (not isinstance(operation, str) or not operation):
        raise TypeError(f"operation must be a non-empty str or None, got {operation!r}")

    return DeadLetterDecorator(queue, operation)


class DeadLetterDecorator:
    """What `riprap.dead_letter(queue, operation)` returns: the decorator and pipeline layer.

    Attributes:
        queue: The `DeadLetterQueue` failures are recorded in.
        operation: The name entries are recorded under (None: the function's `module:qualname`).
    """

    __slots__ = ("operation", "queue")

    def __init__(self, queue: DeadLetterQueue, operation: str | None) -> None:
        self.queue = queue
        self.operation = operation

    def __call__(self, func: F) -> F:
        """Record each call of `func` that fails, then re-raise its own exception."""
        queue, operation = self.queue, self.operation
        return decorate(  # type: ignore[no-any-return]
            func,
            "riprap.dead_letter",
            native=lambda f: _sync_wrapper(f, queue, operation or operation_of(f)),
            coroutine=lambda f: _async_wrapper(f, queue, operation or operation_of(f)),
        )

    def __repr__(self) -> str:
        return f"<riprap.dead_letter {self.queue!r} operation={self.operation!r}>"


def _sync_wrapper(
    func: Callable[..., Any], queue: DeadLetterQueue, operation: str
) -> Callable[..., Any]:
    def recorded(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as error:
            if not REPLAYING.get():
                _record(queue, operation, args, kwargs, error)
            raise

    return recorded


def _async_wrapper(
    func: Callable[..., Any], queue: DeadLetterQueue, operation: str
) -> Callable[..., Any]:
    @functools.wraps(func)
    async def recorded(*args: Any, **kwargs: Any) -> Any:
        try:
            return await func(*args, **kwargs)
        except Exception as error:
            if not REPLAYING.get():
                # The write waits for an fsync: keep it off the event loop's thread.
                await asyncio.to_thread(_record, queue, operation, args, kwargs, error)
            raise

    return recorded
