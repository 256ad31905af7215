"""Real-time, multi-threaded audits of the limiter.

Each admitted token is bracketed by two reads of the limiter's own clock, taken just before and
just after `try_acquire`; its real decision time lies between them. The window check only uses
what is certain: for tokens sorted by their lower bound, tokens i..j were all decided within
`[lo_i, lo_j + width]`, so their count must stay within `burst + rate x (lo_j - lo_i + width)`.
A token whose bracket is wider than `width` (its thread was switched out mid-call) is left out,
which can only hide excess, never invent it.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from fractions import Fraction

import pytest
from helpers import halfway, run_threads

from riprap import KeyedRateLimiter, RateLimiter, RateLimitExceeded
from riprap._backend import core

WIDTH_NS = 200_000  # brackets wider than 0.2 ms are left out


def now_ns() -> int:
    """The limiter's clock (Rust: Instant since the process origin; reference: monotonic_ns)."""
    return round(core.monotonic() * 1e9)


def worst_excess(tokens: list[tuple[int, int]], rate: float, burst: float) -> Fraction:
    """max over i <= j of tokens(i..j) - (burst + rate x (lo_j - lo_i + WIDTH)), in tokens."""
    r = Fraction(rate) / 10**9
    worst = Fraction(-(10**9))
    before = 0
    start_min: Fraction | None = None
    for lo, n in sorted(tokens):
        start = before - r * lo
        start_min = start if start_min is None else min(start_min, start)
        before += n
        worst = max(worst, before - r * lo - start_min)
    return worst - Fraction(burst) - r * WIDTH_NS


@pytest.mark.slow
def test_sixteen_threads_hammering_one_limiter_for_5s_never_exceed_the_bound() -> None:
    # 16 threads, real time, 5 s; every window of the admitted tokens holds
    # burst + rate x window.
    rate, burst = 2000.0, 40.0
    made = now_ns()
    lim = RateLimiter(rate, burst)
    deadline = time.perf_counter() + 5.0
    per_thread: list[list[tuple[int, int, int]]] = [[] for _ in range(16)]
    denied_at: list[list[int]] = [[] for _ in range(16)]
    denied = [0] * 16

    def worker(k: int) -> None:
        rng = random.Random(k)
        mine, refused, no = per_thread[k], denied_at[k], 0
        while time.perf_counter() < deadline:
            n = 1 if rng.random() < 0.8 else 3
            lo = now_ns()
            ok = lim.try_acquire(n)
            hi = now_ns()
            if ok:
                mine.append((lo, hi, n))
            else:
                no += 1
                if hi - lo <= WIDTH_NS:  # a denial whose time is sure to 0.2 ms
                    refused.append(lo)
        denied[k] = no

    run_threads(16, worker)
    admitted = [rec for recs in per_thread for rec in recs]
    tokens = sum(n for _, _, n in admitted)
    last = max(hi for _, hi, _ in admitted)
    # Never more than the bucket plus what the rate made since the limiter was created.
    assert tokens <= burst + rate * (last - made) / 1e9, tokens
    # Liveness, judged on the time the callers really were asking, so load that stops every
    # thread for a while cannot fail it: a denial proves the bucket held fewer than 3 tokens,
    # and between two denials less than (burst - 3) / rate apart it cannot overflow, so every
    # token made in between was taken (up to the < 3 left at the end of each such stretch).
    denials = sorted(t for times in denied_at for t in times)
    max_gap = (burst - 3) / rate * 1e9
    covered = sum(b - a for a, b in itertools.pairwise(denials) if b - a < max_gap)
    stretches = 1 + sum(b - a >= max_gap for a, b in itertools.pairwise(denials))
    owed = rate * covered / 1e9 - 3 * stretches
    assert covered > 1e9, covered  # the limiter was saturated for more than a second
    assert tokens >= 0.99 * owed, (tokens, owed)
    assert (
        sum(1 for recs in per_thread if recs) >= 8
    )  # contention: many threads won tokens
    assert sum(denied) > 10 * len(admitted)
    stats = lim.get_stats()
    assert stats["admitted"] == len(admitted)
    assert stats["rejected"] == sum(denied)
    tight = [(lo, n) for lo, hi, n in admitted if hi - lo <= WIDTH_NS]
    assert len(tight) > 0.5 * len(admitted)
    excess = worst_excess(tight, rate, burst)
    assert excess <= 0, float(excess)


def test_keyed_limiter_under_threads_counts_exactly() -> None:
    lim = KeyedRateLimiter(1e-3, 3, max_keys=10_000)  # nothing refills during the test
    wins = [0] * 8

    def worker(k: int) -> None:
        for i in range(2000):
            wins[k] += lim.try_acquire(i % 500)

    run_threads(8, worker)
    assert sum(wins) == 500 * 3  # each key's bucket of 3, exactly once
    assert len(lim) == 500
    s = lim.get_stats()
    assert (s["admitted"], s["rejected"]) == (1500, 16_000 - 1500)


def test_no_lock_is_held_around_the_limited_call_and_waits_release_the_gil() -> None:
    # pybreaker holds its lock around the call; here 8 threads each run a 100 ms call through
    # one limiter: in parallel, not one by one. A barrier inside the call only opens when all
    # eight are inside at once (a limiter that serialised them would break it), and the time
    # is compared with the same eight calls without a limiter, timed in the same run.
    lim = RateLimiter(1000, 100)

    def call_with(inside: threading.Barrier) -> None:
        inside.wait(timeout=5)
        time.sleep(0.1)

    def timed_parallel(work: Callable[[threading.Barrier], object]) -> float:
        inside = threading.Barrier(8)
        t0 = time.perf_counter()
        run_threads(8, lambda i: work(inside))
        return time.perf_counter() - t0

    unprotected = timed_parallel(call_with)
    elapsed = timed_parallel(lim(call_with))
    assert elapsed < halfway(unprotected, 8 * 0.1), (elapsed, unprotected)
    assert lim.get_stats()["admitted"] == 8

    # A blocking wait releases the GIL: while a waiter sleeps towards its slot, this thread
    # runs Python and sees it queued (its reservation pushes the next free slot from 1 s to
    # 2 s away) and not yet admitted. A wait that held the GIL would let this thread run again
    # only once the waiter was through.
    slow = RateLimiter(1, 1)
    assert slow.try_acquire()  # the next token is 1 s away
    waiter = threading.Thread(target=slow.acquire)
    waiter.start()
    queued = False
    deadline = time.perf_counter() + 5.0
    while not queued and time.perf_counter() < deadline:
        try:
            slow.acquire(timeout=0)
        except RateLimitExceeded as e:
            queued = e.retry_after > 1.0  # behind the waiter's slot
        time.sleep(0.001)
    mid_wait = slow.get_stats()["waited"] == 0 and waiter.is_alive()
    waiter.join(timeout=5)
    assert queued, "never saw the waiter queued while it waited"
    assert mid_wait, "this thread only ran again after the waiter was admitted"
    assert slow.get_stats()["waited"] == 1


@pytest.mark.slow
def test_reg_L11_stacked_limiters_under_32_threads_each_hold_their_bound() -> None:
    # vutran1710/PyrateLimiter#106 (shortened to 2 s): 32 threads through two stacked limiters
    # (11/s and 190/min); a call needs both, and each must stay within its own bound.
    per_second = RateLimiter(11, 11)
    per_minute = RateLimiter(190 / 60, 190)
    deadline = time.perf_counter() + 2.0
    seen: dict[str, list[tuple[int, int, int]]] = {"s": [], "m": []}
    lock = threading.Lock()

    def worker(i: int) -> None:
        mine: dict[str, list[tuple[int, int, int]]] = {"s": [], "m": []}
        while time.perf_counter() < deadline:
            lo = now_ns()
            first = per_second.try_acquire()
            mid = now_ns()
            if first:
                mine["s"].append((lo, mid, 1))
                second = per_minute.try_acquire()
                hi = now_ns()
                if second:
                    mine["m"].append((mid, hi, 1))
            time.sleep(0.0005)
        with lock:
            for k, records in mine.items():
                seen[k].extend(records)

    run_threads(32, worker)
    assert 11 <= len(seen["s"]) <= 11 + 11 * 2.1
    assert len(seen["m"]) <= len(seen["s"])
    for key, (rate, burst) in {"s": (11.0, 11.0), "m": (190 / 60, 190.0)}.items():
        tight = [(lo, n) for lo, hi, n in seen[key] if hi - lo <= WIDTH_NS]
        assert worst_excess(tight, rate, burst) <= 0, key
