"""Hypothesis properties of the limiters through the public API, on the active backend, with a
`Fraction` oracle: the window bound, throughput under saturation and the exact wait.

Time is a ManualClock driven in whole nanoseconds (kept below 2e15 ns, where a float number of
seconds converts back to the same nanosecond).
"""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import assume, given
from hypothesis import strategies as st
from limiter_helpers import NS, Oracle, worst_window_excess

from riprap import KeyedRateLimiter, RateLimiter, RateLimitExceeded
from riprap.testing import ManualClock

rates = st.one_of(
    st.floats(1e-3, 1e6),
    st.integers(1, 10**6).map(float),
    st.sampled_from([2e6, 1e7, 5e8, 1e9, 0.5, 2.5]),
)
bursts = st.one_of(st.none(), st.integers(1, 100).map(float), st.floats(1.0, 50.0))

# (what, nanoseconds, tokens): "try" a request after a step, "wait" for one (blocking acquire on
# the manual clock), or step the clock back.
events = st.lists(
    st.tuples(
        st.sampled_from(["try", "try", "try", "wait", "back"]),
        st.one_of(st.integers(0, 1000), st.integers(0, 3 * NS)),
        st.integers(1, 4),
    ),
    min_size=1,
    max_size=120,
)


def build(rate: float, burst: float | None, clock: ManualClock) -> RateLimiter:
    try:
        return RateLimiter(rate, burst, clock=clock)
    except ValueError as e:
        reason = str(e)
    assert "representable" in reason, reason  # the only refusal valid rates can meet
    assume(False)
    raise AssertionError("unreachable")


@given(rate=rates, burst=bursts, steps=events)
def test_every_window_holds_the_bound_and_decisions_match_the_oracle(
    rate: float, burst: float | None, steps: list[tuple[str, int, int]]
) -> None:
    clock = ManualClock()
    lim = build(rate, burst, clock)
    oracle = Oracle(rate, burst)
    cap = math.floor(lim.burst)
    admitted: list[tuple[int, int]] = []
    for what, ns, asked in steps:
        n = min(asked, cap)
        if what == "back":
            clock.set(max(0, clock.now_ns() - ns) / NS)
            continue
        clock.advance(ns / NS)
        now = Fraction(clock.now_ns(), NS)
        if what == "try":
            ok = lim.try_acquire(n)
            assert ok == oracle.take(now, n)
            if ok:
                admitted.append((clock.now_ns(), n))
            continue
        wait = oracle.wait(now, n)
        if wait * NS > 10**6 * NS:  # keep the clock in exact-float range
            continue
        lim.acquire(n)  # blocks by advancing the manual clock to the slot
        assert clock.now_ns() == (now + wait) * NS
        assert oracle.take(Fraction(clock.now_ns(), NS), n)
        admitted.append((clock.now_ns(), n))
    # The documented bound, with the configured rate and burst (not just the effective ones).
    excess = worst_window_excess(admitted, Fraction(rate), Fraction(lim.burst))
    assert excess <= 0, float(excess)


@given(
    # Up to 200/s, so 60 simulated seconds stay cheap on the Python backend too.
    rate=st.one_of(st.floats(1e-2, 200.0), st.integers(1, 200).map(float)),
    burst=bursts,
    n=st.integers(1, 3),
)
def test_reg_L17_saturation_for_60_simulated_seconds_admits_99_percent_of_the_rate(
    rate: float, burst: float | None, n: int
) -> None:
    # tower-rs/tower#438: a caller that always waits for the next token, for 60 s.
    clock = ManualClock()
    lim = build(rate, burst, clock)
    n = min(n, math.floor(lim.burst))
    tokens = 0
    while True:
        lim.acquire(n)
        if clock.now_ns() > 60 * NS:
            break
        tokens += n
    assert tokens >= 0.99 * rate * 60, (tokens, rate)
    assert tokens <= lim.burst + rate * 60


@given(
    rate=rates,
    burst=bursts,
    warmup=st.lists(st.tuples(st.integers(0, NS), st.integers(1, 4)), max_size=15),
    n=st.integers(1, 4),
    fractions=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=8),
)
def test_reg_L16_after_a_denial_no_fraction_of_retry_after_admits_and_it_does(
    rate: float,
    burst: float | None,
    warmup: list[tuple[int, int]],
    n: int,
    fractions: list[float],
) -> None:
    # antifuchs/ratelimit_meter#36, with the oracle's exact wait.
    clock = ManualClock()
    lim = build(rate, burst, clock)
    oracle = Oracle(rate, burst)
    cap = math.floor(lim.burst)
    for ns, k in warmup:
        clock.advance(ns / 1000 / NS)
        assert lim.try_acquire(min(k, cap)) == oracle.take(
            Fraction(clock.now_ns(), NS), min(k, cap)
        )
    n = min(n, cap)
    now = Fraction(clock.now_ns(), NS)
    chunk = cap
    while chunk:  # empty the bucket (bursts go up to 1e9)
        while lim.try_acquire(chunk):
            assert oracle.take(now, chunk)
        chunk //= 2
    try:
        lim.acquire(n, timeout=0)
    except RateLimitExceeded as e:
        retry_after = e.retry_after
    else:
        raise AssertionError("an empty bucket admitted a request")
    wait_ns = int(oracle.wait(now, n) * NS)
    assert wait_ns > 0
    assert retry_after == wait_ns / 1e9
    assume(clock.now_ns() + wait_ns < 2 * 10**15)
    start = clock.now_ns()
    for f in sorted(fractions):
        probe = start + min(int(f * wait_ns), wait_ns - 1)
        clock.set(probe / NS)
        assert not lim.try_acquire(n)
    clock.set((start + wait_ns - 1) / NS)
    assert not lim.try_acquire(n)
    clock.set((start + wait_ns) / NS)
    assert lim.try_acquire(n)


@given(
    rate=st.floats(0.01, 1000.0),
    burst=st.integers(1, 5).map(float),
    steps=st.lists(
        st.tuples(
            st.integers(0, 2 * NS),
            st.sampled_from([1, -1, "k", b"k", 2**65]),
            st.integers(1, 3),
        ),
        max_size=80,
    ),
)
def test_keyed_buckets_match_one_oracle_per_key(
    rate: float, burst: float, steps: list[tuple[int, object, int]]
) -> None:
    clock = ManualClock()
    lim = KeyedRateLimiter(rate, burst, max_keys=100, clock=clock)
    oracles: dict[object, Oracle] = {}
    for ns, key, asked in steps:
        clock.advance(ns / 10 / NS)
        n = min(asked, int(burst))
        now = Fraction(clock.now_ns(), NS)
        oracle = oracles.setdefault((type(key), key), Oracle(rate, burst))
        assert lim.try_acquire(key, n) == oracle.take(now, n)
    assert len(lim) == len(oracles)
