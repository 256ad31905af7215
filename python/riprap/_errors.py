"""riprap's exception hierarchy.

Every exception riprap raises means "riprap refused" and derives from `ResilienceError`. When a
retried call finally fails, the caller gets its own exception back, never a wrapper. Where the seed
design named an error, the old name is an alias of the same class.

This module is pure Python and never imports `_core`, which keeps the import graph acyclic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "BulkheadRejectedError",
    "BulkheadRejectedException",
    "BulkheadTimeoutError",
    "BulkheadTimeoutException",
    "CircuitBreakerOpenException",
    "CircuitOpenError",
    "DeadLetterError",
    "FallbackExhaustedError",
    "FallbackExhaustedException",
    "REJECTIONS",
    "RateLimitExceeded",
    "ResilienceError",
    "TimeoutExceededError",
]


class ResilienceError(Exception):
    """Base class of every error riprap raises on its own behalf."""


class CircuitOpenError(ResilienceError):
    """A circuit breaker rejected the call.

    Raised as `CircuitOpenError(name, retry_after)`; a breaker raises a fresh instance on every
    rejection. It has no Python `__init__`: the attributes are read from `args` and the message
    is formatted when it is shown, so a rejection costs a C-level construction only (an `__init__`
    written in Python costs ~0.7 µs, more than the whole ~700 ns a rejection may cost).

    Attributes:
        name: The breaker's name.
        retry_after: Seconds until the breaker lets a trial call through (0 when half-open and
            its trial slots are taken).
    """

    if TYPE_CHECKING:

        def __init__(
            self, name: str, retry_after: float, message: str | None = None
        ) -> None: ...

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def retry_after(self) -> float:
        """Seconds until the breaker lets a trial call through."""
        return self.args[1]  # type: ignore[no-any-return]

    def __str__(self) -> str:
        if len(self.args) > 2 and self.args[2]:
            return str(self.args[2])
        name, retry_after = self.args[0], self.args[1]
        return f"circuit breaker {name!r} is open; retry after {retry_after:.3f}s"


class RateLimitExceeded(ResilienceError):  # noqa: N818 - the public name, kept
    """A rate limiter refused the call.

    Attributes:
        name: The limiter's name (or None).
        retry_after: Seconds until the request could be admitted.
    """

    def __init__(
        self, name: str | None, retry_after: float, message: str | None = None
    ) -> None:
        self.name = name
        self.retry_after = retry_after
        super().__init__(
            message or f"rate limit {name!r} exceeded; retry after {retry_after:.3f}s"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.retry_after, str(self)))


class BulkheadRejectedError(ResilienceError):
    """A bulkhead was full (all slots busy and its queue full, or the wait ran out).

    Attributes:
        name: The bulkhead's name.
    """

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        super().__init__(message or f"bulkhead {name!r} rejected the call")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, str(self)))


class BulkheadTimeoutError(ResilienceError, TimeoutError):
    """A call inside a bulkhead ran longer than the bulkhead's `timeout`.

    Attributes:
        name: The bulkhead's name.
        timeout: The limit in seconds.
    """

    def __init__(self, name: str, timeout: float, message: str | None = None) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(
            message or f"bulkhead {name!r} call timed out after {timeout}s"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.timeout, str(self)))


class TimeoutExceededError(ResilienceError, TimeoutError):
    """A `riprap.timeout` or `riprap.deadline` ran out.

    It is a `TimeoutError`, so a retry policy with the default exception set retries it.

    Attributes:
        timeout: The limit in seconds.
    """

    def __init__(self, timeout: float, message: str | None = None) -> None:
        self.timeout = timeout
        super().__init__(message or f"timed out after {timeout}s")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.timeout, str(self)))


class FallbackExhaustedError(ResilienceError):
    """The primary call and every fallback failed and no cached or default value was available.

    `__cause__` is the primary error.

    Attributes:
        errors: Every error in the order it happened, the primary's first.
    """

    def __init__(self, errors: list[BaseException], message: str | None = None) -> None:
        self.errors = list(errors)
        super().__init__(message or f"all {len(self.errors)} fallback levels failed")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errors, str(self)))


class DeadLetterError(ResilienceError):
    """The dead-letter queue itself failed: its file could not be opened, read or written.

    Disk full, a read-only directory, a file that is corrupt or not a SQLite database, or a
    lock held by another process for longer than the busy timeout. The SQLite (or OS) error is
    the `__cause__`; the message names the file.

    Attributes:
        path: The queue's database file.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, str(self)))


# The seed design's names: the same class objects.
CircuitBreakerOpenException = CircuitOpenError
BulkheadRejectedException = BulkheadRejectedError
BulkheadTimeoutException = BulkheadTimeoutError
FallbackExhaustedException = FallbackExhaustedError


#: riprap's own rejections: "riprap refused" (load shedding), not "the dependency failed". A
#: retry policy does not retry them unless it names one of riprap's classes, and a circuit
#: breaker never counts them as failures. Both backends read this one tuple.
REJECTIONS: tuple[type[ResilienceError], ...] = (
    RateLimitExceeded,
    BulkheadRejectedError,
    CircuitOpenError,
)

# The classes are public as `riprap.<Name>`: say so in tracebacks, reprs, pickles and the
# dead-letter queue's `error_type`, instead of this private module's path.
for _cls in (
    ResilienceError,
    CircuitOpenError,
    RateLimitExceeded,
    BulkheadRejectedError,
    BulkheadTimeoutError,
    TimeoutExceededError,
    FallbackExhaustedError,
    DeadLetterError,
):
    _cls.__module__ = "riprap"
del _cls
