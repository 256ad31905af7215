"""riprap.testing.ManualClock on the active backend."""

from __future__ import annotations

import asyncio

import pytest

from riprap.testing import ManualClock


def test_advance_sleep_asleep_set() -> None:
    c = ManualClock(1.5)
    assert c.now() == 1.5
    c.advance(0.25)
    c.sleep(0.25)
    asyncio.run(c.asleep(1.0))
    assert c.now() == 3.0
    assert c.now_ns() == 3_000_000_000
    c.set(0.5)
    assert c.now() == 0.5


def test_huge_advances_saturate_instead_of_overflowing() -> None:
    # commonwarexyz/monorepo#2487: 584+ years of nanoseconds do not fit in u64; the clock stops at
    # the end of time.
    c = ManualClock()
    c.advance(600 * 365 * 86400.0)
    c.advance(600 * 365 * 86400.0)
    assert c.now_ns() == 2**64 - 1


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_amounts_are_refused(bad: float) -> None:
    c = ManualClock()
    with pytest.raises(ValueError, match="seconds"):
        c.advance(bad)
    with pytest.raises(ValueError, match="start"):
        ManualClock(bad)


def test_types_are_checked() -> None:
    with pytest.raises(TypeError, match="seconds"):
        ManualClock().advance("1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seconds"):
        ManualClock().advance(True)


def test_nanosecond_rounding_is_half_up() -> None:
    c = ManualClock()
    c.advance(1.4e-9)
    assert c.now_ns() == 1
    c.advance(0.4e-9)
    assert c.now_ns() == 1
