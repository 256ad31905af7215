"""The error hierarchy, attributes, pickling."""

from __future__ import annotations

import pickle

import pytest

import riprap


def test_hierarchy() -> None:
    for cls in (
        riprap.CircuitOpenError,
        riprap.RateLimitExceeded,
        riprap.BulkheadRejectedError,
        riprap.BulkheadTimeoutError,
        riprap.TimeoutExceededError,
        riprap.FallbackExhaustedError,
    ):
        assert issubclass(cls, riprap.ResilienceError)
        assert issubclass(cls, Exception)
    assert issubclass(riprap.BulkheadTimeoutError, TimeoutError)
    assert issubclass(riprap.TimeoutExceededError, TimeoutError)
    assert not issubclass(riprap.CircuitOpenError, TimeoutError)


@pytest.mark.parametrize(
    ("exc", "attrs"),
    [
        (riprap.CircuitOpenError("db", 2.5), {"name": "db", "retry_after": 2.5}),
        (riprap.RateLimitExceeded("api", 0.25), {"name": "api", "retry_after": 0.25}),
        (riprap.BulkheadRejectedError("pool"), {"name": "pool"}),
        (riprap.BulkheadTimeoutError("pool", 3.0), {"name": "pool", "timeout": 3.0}),
        (riprap.TimeoutExceededError(1.5), {"timeout": 1.5}),
    ],
)
def test_attributes_and_pickling(exc: Exception, attrs: dict[str, object]) -> None:
    for k, v in attrs.items():
        assert getattr(exc, k) == v
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is type(exc)
    assert str(clone) == str(exc)
    for k, v in attrs.items():
        assert getattr(clone, k) == v


def test_the_classes_are_named_by_their_public_path() -> None:
    # Tracebacks, reprs, pickles and the dead-letter queue show `riprap.<Name>`, the name a
    # user can import, not the private module that defines it.
    from riprap._dlq_entry import describe_error

    for name in (
        "ResilienceError",
        "CircuitOpenError",
        "RateLimitExceeded",
        "BulkheadRejectedError",
        "BulkheadTimeoutError",
        "TimeoutExceededError",
        "FallbackExhaustedError",
        "DeadLetterError",
    ):
        cls = getattr(riprap, name)
        assert (cls.__module__, cls.__qualname__) == ("riprap", name)
    assert (
        describe_error(riprap.CircuitOpenError("db", 1.0))[0]
        == "riprap.CircuitOpenError"
    )
    assert (
        pickle.loads(pickle.dumps(riprap.RateLimitExceeded("api", 0.5))).retry_after
        == 0.5
    )


def test_fallback_exhausted_keeps_errors_in_order() -> None:
    primary, second = ValueError("primary"), KeyError("second")

    def exhaust() -> None:
        try:
            raise primary
        except ValueError as e:
            raise riprap.FallbackExhaustedError([primary, second]) from e

    with pytest.raises(riprap.FallbackExhaustedError) as info:
        exhaust()
    assert info.value.errors == [primary, second]
    assert info.value.__cause__ is primary
    clone = pickle.loads(pickle.dumps(info.value))
    assert [type(e) for e in clone.errors] == [ValueError, KeyError]


def test_messages_say_what_refused() -> None:
    assert "open" in str(riprap.CircuitOpenError("db", 1.0))
    assert "db" in str(riprap.CircuitOpenError("db", 1.0))
    assert "exceeded" in str(riprap.RateLimitExceeded(None, 1.0))
