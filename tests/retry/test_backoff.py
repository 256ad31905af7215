"""Backoff math and RetryPolicy validation, on the active backend."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

import riprap
from riprap import RetryPolicy

NO_JITTER = {"jitter": False}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"backoff_strategy": "exponential"},
            [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0],
        ),
        ({"backoff_strategy": "linear"}, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
        ({"backoff_strategy": "fixed"}, [1.0] * 8),
        ({"exponential_base": 1.5, "base_delay": 2.0}, [2.0, 3.0, 4.5, 6.75, 10.125]),
        ({"exponential_base": 1.0}, [1.0, 1.0, 1.0]),
        ({"base_delay": 0.0}, [0.0, 0.0, 0.0]),
    ],
)
def test_deterministic_strategies(
    fields: dict[str, object], expected: list[float]
) -> None:
    p = RetryPolicy(**NO_JITTER, **fields)  # type: ignore[arg-type]
    assert [p.compute_delay(n) for n in range(1, len(expected) + 1)] == expected


@pytest.mark.parametrize(
    "n", [1023, 1024, 1025, 10**6, 10**7, 2**53, 2**63 - 1, 2**63, 2**70]
)
def test_huge_attempts_saturate_to_the_cap(n: int) -> None:
    # jd/tenacity#710, hynek/stamina#104, jd/tenacity#526: no OverflowError, no bigint.
    assert RetryPolicy(**NO_JITTER).compute_delay(n) == 60.0  # type: ignore[arg-type]
    assert RetryPolicy(base_delay=0.0, **NO_JITTER).compute_delay(n) == 0.0  # type: ignore[arg-type]
    for strategy in ("exponential", "linear", "fixed", "decorrelated", "full_jitter"):
        d = RetryPolicy(backoff_strategy=strategy).compute_delay(n)
        assert math.isfinite(d)
        assert 0.0 <= d <= 66.0


def test_proportional_jitter_survives_the_cap() -> None:
    p = RetryPolicy(seed=3)
    draws = [p.compute_delay(50) for _ in range(4000)]
    assert min(draws) >= 54.0
    assert max(draws) <= 66.0
    assert len(set(draws)) > 3900  # not lock-step at max_delay
    assert 59.0 < statistics.mean(draws) < 61.0


def test_full_jitter_and_decorrelated_ranges() -> None:
    full = RetryPolicy(backoff_strategy="full_jitter", seed=1)
    draws = [full.compute_delay(4) for _ in range(2000)]
    assert all(0.0 <= d <= 8.0 for d in draws)
    assert min(draws) < 0.5
    assert max(draws) > 7.5
    dec = RetryPolicy(
        backoff_strategy="decorrelated", base_delay=0.5, max_delay=10.0, seed=2
    )
    prev = None
    for n in range(1, 500):
        d = dec.compute_delay(n, prev)
        assert 0.5 <= d <= 10.0
        assert d <= max((prev if prev is not None else 0.5) * 3, 0.5)
        prev = d


def test_jitter_false_does_not_disable_full_jitter_randomness() -> None:
    p = RetryPolicy(backoff_strategy="full_jitter", jitter=False, seed=5)
    assert len({p.compute_delay(3) for _ in range(50)}) > 40


def test_same_seed_same_delays_and_unseeded_differ() -> None:
    a, b = RetryPolicy(seed=99), RetryPolicy(seed=99)
    assert [a.compute_delay(n) for n in range(1, 20)] == [
        b.compute_delay(n) for n in range(1, 20)
    ]
    c, d = RetryPolicy(), RetryPolicy()
    assert [c.compute_delay(3) for _ in range(5)] != [
        d.compute_delay(3) for _ in range(5)
    ]


def test_negative_seed_is_taken_modulo_2_64() -> None:
    assert RetryPolicy(seed=-1).seed == 2**64 - 1
    assert RetryPolicy(seed=-1).compute_delay(2) == RetryPolicy(
        seed=2**64 - 1
    ).compute_delay(2)


@given(
    strategy=st.sampled_from(
        ["exponential", "linear", "fixed", "decorrelated", "full_jitter"]
    ),
    base=st.floats(0, 100),
    extra=st.floats(0, 1e6),
    exp_base=st.floats(1, 1e6),
    jitter_range=st.floats(0, 1),
    n=st.integers(1, 2**64),
)
def test_delay_is_finite_non_negative_and_bounded(
    strategy: str,
    base: float,
    extra: float,
    exp_base: float,
    jitter_range: float,
    n: int,
) -> None:
    p = RetryPolicy(
        backoff_strategy=strategy,
        base_delay=base,
        max_delay=base + extra,
        exponential_base=exp_base,
        jitter_range=jitter_range,
    )
    d = p.compute_delay(n)
    assert math.isfinite(d)
    assert d >= 0.0
    assert d <= p.max_delay * (1 + jitter_range)


@pytest.mark.parametrize(
    ("fields", "field_named"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": -3}, "max_attempts"),
        ({"base_delay": float("nan")}, "base_delay"),
        ({"base_delay": -1.0}, "base_delay"),
        ({"max_delay": float("inf")}, "max_delay"),
        ({"max_delay": -0.5, "base_delay": 0.0}, "max_delay"),
        ({"exponential_base": 0.5}, "exponential_base"),
        ({"exponential_base": float("nan")}, "exponential_base"),
        ({"jitter_range": 1.5}, "jitter_range"),
        ({"jitter_range": -0.1}, "jitter_range"),
        ({"backoff_strategy": "fibonacci"}, "backoff_strategy"),
        ({"deadline": 0.0}, "deadline"),
        ({"deadline": float("inf")}, "deadline"),
        ({"deadline": float("nan")}, "deadline"),
        ({"base_delay": 100.0}, "max_delay"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(
    fields: dict[str, object], field_named: str
) -> None:
    with pytest.raises(ValueError, match=field_named):
        RetryPolicy(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "field_named"),
    [
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": 2.0}, "max_attempts"),
        ({"base_delay": "1"}, "base_delay"),
        ({"base_delay": True}, "base_delay"),
        ({"jitter": 1}, "jitter"),
        ({"backoff_strategy": 3}, "backoff_strategy"),
        ({"retryable_exceptions": (ValueError, "nope")}, "retryable_exceptions"),
        ({"retryable_exceptions": 7}, "retryable_exceptions"),
        ({"retryable_status_codes": ("503",)}, "retryable_status_codes"),
        ({"retryable_message_patterns": "reset"}, "retryable_message_patterns"),
        ({"retry_on_result": 5}, "retry_on_result"),
        ({"budget": 0.2}, "budget"),
        ({"seed": 1.5}, "seed"),
        ({"respect_retry_after": "yes"}, "respect_retry_after"),
    ],
)
def test_invalid_types_raise_type_error_naming_the_field(
    fields: dict[str, object], field_named: str
) -> None:
    with pytest.raises(TypeError, match=field_named):
        RetryPolicy(**fields)  # type: ignore[arg-type]


def test_messages_are_identical_on_both_backends() -> None:
    from riprap import _core, _reference

    kwargs = {
        "strategy": "exponential",
        "base_delay": 1.0,
        "max_delay": 60.0,
        "exponential_base": 2.0,
        "jitter": True,
        "jitter_range": 0.1,
        "max_attempts": 3,
        "deadline": None,
        "seed": None,
    }
    for bad in (
        {"base_delay": float("nan")},
        {"max_delay": -1.5e-7},
        {"jitter_range": 2.0},
        {"strategy": "nope"},
        {"max_attempts": 0},
        {"deadline": 0.0},
        {"base_delay": 1e16, "max_delay": 1e15},
    ):
        messages = []
        for core in (_core, _reference):
            with pytest.raises(ValueError) as info:
                core.RetrySchedule(**{**kwargs, **bad})
            messages.append(str(info.value))
        assert messages[0] == messages[1]


@pytest.mark.parametrize(
    ("attempt", "error", "message"),
    [
        (-1, ValueError, "attempt must be >= 1, got -1"),
        (0, ValueError, "attempt must be >= 1, got 0"),
        (-(2**70), ValueError, f"attempt must be >= 1, got {-(2**70)}"),
        (1.0, TypeError, "attempt must be an int, got float"),
        (True, TypeError, "attempt must be an int, got bool"),
    ],
)
def test_compute_delay_states_the_rule_for_attempt(
    attempt: object, error: type[Exception], message: str
) -> None:
    # Attempts are numbered from 1: every refusal says so (-1 once said ">= 0").
    with pytest.raises(error) as info:
        RetryPolicy().compute_delay(attempt)  # type: ignore[arg-type]
    assert str(info.value) == message
    with pytest.raises(error) as adaptive:
        riprap.AdaptiveBackoffStrategy().calculate_adaptive_delay("op", attempt)  # type: ignore[arg-type]
    assert str(adaptive.value) == message


def test_lists_are_normalised_and_policy_is_hashable() -> None:
    p = RetryPolicy(
        retryable_exceptions=[KeyError],  # type: ignore[arg-type]
        retryable_status_codes=[500],  # type: ignore[arg-type]
        retryable_message_patterns=["Boom"],  # type: ignore[arg-type]
    )
    assert p.retryable_exceptions == (KeyError,)
    assert p.retryable_status_codes == (500,)
    assert hash(p) == hash(
        RetryPolicy(
            retryable_exceptions=(KeyError,),
            retryable_status_codes=(500,),
            retryable_message_patterns=("Boom",),
        )
    )
    assert p.is_retryable(ValueError("a BOOM happened"))


def test_predefined_policies_have_the_seed_values() -> None:
    n, d, a = (
        riprap.NETWORK_RETRY_POLICY,
        riprap.DATABASE_RETRY_POLICY,
        riprap.API_RETRY_POLICY,
    )
    assert (n.max_attempts, n.base_delay, n.max_delay, n.exponential_base) == (
        5,
        1.0,
        30.0,
        2.0,
    )
    assert n.retryable_exceptions == (ConnectionError, TimeoutError, OSError)
    assert (d.max_attempts, d.base_delay, d.max_delay, d.exponential_base) == (
        3,
        0.5,
        10.0,
        2.0,
    )
    assert d.retryable_exceptions == (ConnectionError, TimeoutError)
    assert (a.max_attempts, a.base_delay, a.max_delay, a.exponential_base) == (
        4,
        2.0,
        60.0,
        1.5,
    )
    assert a.retryable_status_codes == (429, 502, 503, 504)


def test_defaults_are_the_seed_defaults() -> None:
    p = RetryPolicy()
    assert (p.max_attempts, p.base_delay, p.max_delay, p.exponential_base) == (
        3,
        1.0,
        60.0,
        2.0,
    )
    assert (p.jitter, p.jitter_range, p.backoff_strategy) == (True, 0.1, "exponential")
    assert p.retryable_exceptions == (ConnectionError, TimeoutError, OSError)
    assert p.retryable_status_codes == (502, 503, 504, 429)
    assert len(p.retryable_message_patterns) == 6
    assert p.respect_retry_after is True
    assert not p.is_retryable(
        Exception("boom")
    )  # Exception is never retried by default
