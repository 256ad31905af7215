"""RetryBudget on the active backend."""

from __future__ import annotations

import pytest

import riprap
from riprap.testing import ManualClock


def test_defaults_and_properties() -> None:
    b = riprap.RetryBudget()
    assert (b.ratio, b.min_per_second, b.window) == (0.2, 3.0, 10.0)
    assert b.get_stats()["available"] == 30.0


def test_ratio_of_first_attempts_plus_floor(clock: ManualClock) -> None:
    b = riprap.RetryBudget(ratio=0.2, min_per_second=0.1, window=10.0, clock=clock)
    for _ in range(20):
        b.deposit()
    # 0.2 x 20 + 0.1 x 10 = 5 retries.
    assert [b.try_withdraw() for _ in range(6)] == [True] * 5 + [False]
    s = b.get_stats()
    assert (s["deposits"], s["withdrawals"], s["total_refused"]) == (20, 5, 1)
    assert s["available"] == 0.0


def test_window_slides_in_tenths(clock: ManualClock) -> None:
    b = riprap.RetryBudget(ratio=1.0, min_per_second=0.0, window=10.0, clock=clock)
    b.deposit()
    clock.advance(5.0)
    b.deposit()
    assert [b.try_withdraw() for _ in range(3)] == [True, True, False]
    # Ten 1 s buckets: at t=10 the bucket of t=0 has left; t=5's deposit and withdrawals remain.
    clock.advance(5.0)
    s = b.get_stats()
    assert (s["deposits"], s["withdrawals"]) == (1, 2)
    clock.advance(5.0)
    s = b.get_stats()
    assert (s["deposits"], s["withdrawals"]) == (0, 0)


def test_clock_stepping_back_frees_nothing(clock: ManualClock) -> None:
    clock.advance(100.0)
    b = riprap.RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0, clock=clock)
    assert b.try_withdraw()
    clock.set(0.0)
    assert not b.try_withdraw()


@pytest.mark.parametrize(
    ("kwargs", "field", "error"),
    [
        ({"ratio": -0.1}, "ratio", ValueError),
        ({"ratio": float("nan")}, "ratio", ValueError),
        ({"min_per_second": float("inf")}, "min_per_second", ValueError),
        ({"window": 0}, "window", ValueError),
        ({"window": -1.0}, "window", ValueError),
        ({"ratio": "0.2"}, "ratio", TypeError),
        ({"window": True}, "window", TypeError),
        ({"clock": 5}, "clock", TypeError),
    ],
)
def test_validation(
    kwargs: dict[str, object], field: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match=field):
        riprap.RetryBudget(**kwargs)  # type: ignore[arg-type]
