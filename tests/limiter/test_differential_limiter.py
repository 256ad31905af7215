"""Differential tests: the Rust limiters and their pure-Python twins decide identically.

Both cores are driven directly with the same random sequences (construction, try_acquire(n),
blocking and timed acquires, reservations with their waits, completions and cancellations,
clock steps forward and back, forks, keyed requests over every key type with evictions and idle
TTLs, and invalid arguments). Every result, exception (type and message), ticket, wait, length
and counter must be equal after every step. Runs once, in the
rust pass of `make test`.

The drivers take their choices from a source with `random.Random`'s methods: a seeded
`random.Random` for the 10,000 fixed sequences, or `Drawn`, where every choice is a hypothesis
draw, so a failing sequence shrinks (fewer steps, simpler operations, smaller numbers).
"""

# The lambdas below are called at once, inside the iteration that defines them.
# ruff: noqa: B023

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

import riprap
from riprap import _core, _fork, _reference

pytestmark = pytest.mark.skipif(
    riprap.backend() != "rust",
    reason="drives both cores directly; runs once, in the rust pass",
)

NS = 10**9
T = TypeVar("T")
GRID = [i / 1024 for i in range(1024)]
KEYS: list[object] = [
    0,
    1,
    -1,
    2**63 - 1,
    -(2**63),
    2**64,
    -(2**80),
    "",
    "a",
    "ключ",
    "\udcff",
    b"",
    b"a",
]
BAD_KEYS: list[object] = [1.0, True, None, bytearray(b"a")]
BAD_N: list[object] = [0, -1, 1.5, float("nan"), True, "1", 10**30]


class Choices(Protocol):
    """The `random.Random` methods the drivers use."""

    def random(self) -> float: ...
    def uniform(self, a: float, b: float) -> float: ...
    def randint(self, a: int, b: int) -> int: ...
    def randrange(self, start: int, stop: int | None = None) -> int: ...
    def choice(self, seq: Sequence[T]) -> T: ...


class Drawn:
    """`Choices` answered by hypothesis draws: each choice shrinks on its own."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def random(self) -> float:
        # Drivers compare this with thresholds to pick an operation. Hypothesis's floats and
        # integers crowd at 0 (nearly always the first operation); sampled_from spreads evenly
        # over the grid and shrinks to its first value, 0.0, the simplest operation.
        return self.data.draw(st.sampled_from(GRID))

    def uniform(self, a: float, b: float) -> float:
        return self.data.draw(st.floats(a, b))

    def randint(self, a: int, b: int) -> int:
        return self.data.draw(st.integers(a, b))

    def randrange(self, start: int, stop: int | None = None) -> int:
        lo, hi = (0, start) if stop is None else (start, stop)
        return self.data.draw(st.integers(lo, hi - 1))

    def choice(self, seq: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(seq))


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """A call's result, or its exception as (type name, message, retry_after)."""
    try:
        return ("ok", call())
    except (ValueError, TypeError, NotImplementedError, riprap.RateLimitExceeded) as e:
        return ("raise", (type(e).__name__, str(e), getattr(e, "retry_after", None)))


def random_quota(rng: Choices) -> tuple[float, float | None]:
    rate = rng.choice(
        [
            10 ** rng.uniform(-3, 6),
            float(rng.randint(1, 2000)),
            rng.choice([0.5, 2.5, 3.0, 1e7, 5e8, 1e9, 3e6, 1e12, 1e-11, 0.0, -1.0]),
        ]
    )
    burst = rng.choice([None, float(rng.randint(1, 20)), rng.uniform(0.5, 10), 1e9])
    return rate, burst


class Pair:
    """The same object built on both cores, each with its own manual clock."""

    def __init__(self, make: Callable[[Any, Any], Any]) -> None:
        self.clocks = [_core.ManualClock(), _reference.ManualClock()]
        self.results = [
            outcome(lambda c=c, m=m: make(m, c))
            for m, c in zip((_core, _reference), self.clocks, strict=True)
        ]
        self.objs = [r[1] for r in self.results]

    def built(self) -> bool:
        """Whether both were built; when not, both constructors raised the same error."""
        assert self.results[0] == self.results[1] or (
            self.results[0][0] == self.results[1][0] == "ok"
        ), self.results
        return self.results[0][0] == "ok"

    def same(self, call: Callable[[Any], Any]) -> Any:
        a, b = (outcome(lambda o=o: call(o)) for o in self.objs)
        assert a == b
        assert self.clocks[0].now_ns() == self.clocks[1].now_ns()
        return a

    def advance(self, ns: int) -> None:
        for c in self.clocks:
            c.advance(ns / NS)

    def fork(self) -> None:
        """What a forked child runs first; both cores start fresh."""
        _core.note_fork()
        _reference.note_fork()
        _fork.renew_all()

    def back(self, ns: int) -> None:
        for c in self.clocks:
            c.set(max(0, c.now_ns() - ns) / NS)


def small_step(rng: Choices, interval_hint: float) -> int:
    return rng.choice(
        [
            0,
            rng.randint(0, 1000),
            int(rng.uniform(0, 3) * interval_hint * NS),
            rng.randint(0, 5 * NS),
        ]
    )


def drive_single(rng: Choices) -> None:
    rate, burst = random_quota(rng)
    on_limit = rng.choice(["wait", "raise"])
    pair = Pair(lambda m, c: m.RateLimiter(rate, burst, clock=c, on_limit=on_limit))
    if not pair.built():
        return
    cap = int(min(pair.objs[0].burst, 5))
    hint = min(1 / rate, 10.0)
    tickets: list[int] = []
    for _ in range(rng.randint(5, 25)):
        op = rng.random()
        n = rng.randint(1, cap)
        timeout = rng_timeout(rng, hint)
        bad_n = rng.choice(BAD_N)
        if op < 0.30:
            pair.same(lambda o: o.try_acquire(n))
        elif op < 0.40:
            pair.same(lambda o: o.acquire(n, timeout=timeout))
        elif op < 0.55:
            r = pair.same(lambda o: o._reserve(n, timeout))
            if r[0] == "ok" and r[1]:
                tickets.append(r[1])
        elif op < 0.62 and tickets:
            t = rng.choice(tickets)
            pair.same(lambda o: o._remaining(t))
        elif op < 0.70 and tickets:
            t = tickets.pop(rng.randrange(len(tickets)))
            pair.same(lambda o: o._cancel(t))
        elif op < 0.78 and tickets:
            t = tickets.pop(rng.randrange(len(tickets)))
            pair.same(lambda o: o._complete(t))
        elif op < 0.83:
            pair.same(lambda o: o.try_acquire(bad_n))
        elif op < 0.86:
            pair.same(enter)
        elif op < 0.95:
            pair.advance(small_step(rng, hint))
        elif op < 0.985:
            pair.back(rng.randint(0, 2 * NS))
        else:
            pair.fork()  # tickets taken before it are used after it
        pair.same(lambda o: o.get_stats())


def enter(limiter: Any) -> None:
    """One token the way `with limiter:` takes it (waits or raises per on_limit)."""
    with limiter:
        pass


def rng_timeout(rng: Choices, hint: float) -> float | None:
    return rng.choice([None, 0.0, rng.uniform(0, 3 * hint), 1e-9])


def drive_keyed(rng: Choices) -> None:
    rate, burst = random_quota(rng)
    max_keys = rng.choice([1, 2, 3, 5, 8, 100])
    ttl = rng.choice([None, None, rng.uniform(1e-6, 5.0)])
    pair = Pair(
        lambda m, c: m.KeyedRateLimiter(
            rate, burst, max_keys=max_keys, idle_ttl=ttl, clock=c
        )
    )
    if not pair.built():
        return
    cap = int(min(pair.objs[0].burst, 5))
    hint = min(1 / rate, 10.0)
    tickets: list[tuple[object, int]] = []
    for _ in range(rng.randint(5, 30)):
        op = rng.random()
        n = rng.randint(1, cap)
        key = rng.choice(KEYS)
        timeout = rng_timeout(rng, hint)
        bad_key = rng.choice(BAD_KEYS)
        bad_n = rng.choice(BAD_N)
        if op < 0.40:
            pair.same(lambda o: o.try_acquire(key, n))
        elif op < 0.47:
            pair.same(lambda o: o.acquire(key, n, timeout=timeout))
        elif op < 0.60:
            r = pair.same(lambda o: o._reserve(key, n, timeout))
            if r[0] == "ok" and r[1]:
                tickets.append((key, r[1]))
        elif op < 0.66 and tickets:
            k, t = rng.choice(tickets)
            pair.same(lambda o: o._remaining(k, t))
        elif op < 0.73 and tickets:
            k, t = tickets.pop(rng.randrange(len(tickets)))
            pair.same(lambda o: o._cancel(k, t))
        elif op < 0.80 and tickets:
            k, t = tickets.pop(rng.randrange(len(tickets)))
            pair.same(lambda o: o._complete(k, t))
        elif op < 0.84:
            pair.same(lambda o: o.try_acquire(bad_key))
        elif op < 0.86:
            pair.same(lambda o: o.try_acquire(key, bad_n))
        elif op < 0.96:
            pair.advance(small_step(rng, hint))
        elif op < 0.985:
            pair.back(rng.randint(0, 2 * NS))
        else:
            pair.fork()  # tickets taken before it are used after it
        pair.same(lambda o: (len(o), o.get_stats()))


def test_ten_thousand_random_sequences_decide_identically() -> None:
    rng = random.Random(20261128)
    for case in range(10_000):
        seed = rng.getrandbits(64)
        try:
            (drive_keyed if case % 2 else drive_single)(random.Random(seed))
        except AssertionError as e:
            raise AssertionError(f"case {case}, seed {seed}: {e}") from e


@given(data=st.data())
def test_hypothesis_sequences_decide_identically(data: st.DataObject) -> None:
    # Every choice is a draw, so hypothesis shrinks a failing sequence to a short, simple one.
    drive_single(Drawn(data))
    drive_keyed(Drawn(data))


@pytest.mark.parametrize(
    ("rate", "burst"),
    [
        (r, b)
        for r in [
            1e-10,
            5.42e-11,
            5.5e-11,
            1e-9,
            0.1,
            1e6,
            999_999.0,
            1_000_001.0,
            2e6,
            3e6,
            1.001e9,
            1.0011e9,
            1e12,
            2**60,
            2**70,
            5e-324,
        ]
        for b in [None, 1.0, 1.5, 1e6, 2**53, 1e300]
    ],
)
def test_construction_agrees_at_the_edges(rate: float, burst: float | None) -> None:
    a = outcome(lambda: _core.RateLimiter(rate, burst).get_stats())
    b = outcome(lambda: _reference.RateLimiter(rate, burst).get_stats())
    assert a == b


def drive_many_keys(
    seed: int,
    max_keys: int,
    ttl: float | None,
    rate: float,
    make_key: Callable[[random.Random], object],
) -> tuple[int, int | None]:
    """20,000 checks of keys from `make_key` on both cores, the clock now and then moving on.

    Every decision must agree, and `len` and the stats every 250 steps. Returns the most keys
    held at one of those checks, and how many the Rust core held just before it first forgot
    one (None: it never did).
    """
    rng = random.Random(seed)
    pair = Pair(
        lambda m, c: m.KeyedRateLimiter(
            rate, 3.0, max_keys=max_keys, idle_ttl=ttl, clock=c
        )
    )
    assert pair.built(), pair.results
    rust = pair.objs[0]
    most, held_at_first_eviction = 0, None
    for step in range(20_000):
        key = make_key(rng)
        n = rng.randint(1, 3)
        held = len(rust)
        pair.same(lambda o: o.try_acquire(key, n))
        if held_at_first_eviction is None and rust.get_stats()["evicted"]:
            held_at_first_eviction = held
        if rng.random() < 0.001:
            pair.advance(rng.choice([NS // 20, NS, 2 * NS]))
        if step % 250 == 0:
            pair.same(lambda o: (len(o), o.get_stats()))
            most = max(most, held)
    pair.same(lambda o: (len(o), o.get_stats()))
    return most, held_at_first_eviction


# max_keys, idle_ttl, keys drawn from range(-span, span), rate (burst 3), least peak size.
MANY_INT_KEYS = [
    # One shard in the Rust core (max_keys < 8192).
    # Full: busy keys forgotten under pressure (removal mid-run).
    (2000, None, 6000, 10.0, 1000),
    # Grows to thousands, then idle keys forgotten (rebuilt smaller).
    (8191, None, 20000, 10.0, 4000),
    # Grows without eviction.
    (8191, None, 3000, 10.0, 3000),
    # idle_ttl sweeps.
    (3000, 0.5, 5000, 10.0, 1500),
    (1, None, 3, 10.0, 1),
    # Sharded in the Rust core (2, 2 and 4 shards): eviction still sees the whole table.
    # Idle keys forgotten over every shard.
    (8192, None, 20000, 10.0, 4000),
    # Nothing refills: fills to exactly 10,000, then forgets batches of 156 busy keys.
    (10_000, None, 15_000, 0.01, 9_800),
    # idle_ttl sweeps every shard at once.
    (16_384, 0.5, 40_000, 10.0, 2000),
]


@pytest.mark.parametrize(("max_keys", "ttl", "span", "rate", "least"), MANY_INT_KEYS)
def test_thousands_of_int_keys_grow_evict_and_shrink_identically(
    max_keys: int, ttl: float | None, span: int, rate: float, least: int
) -> None:
    """Many `int` keys: the Rust int tables grow, forget busy keys under pressure, forget idle
    ones and sweep by `idle_ttl`, over one shard or several, and must still decide exactly as
    the reference's one dict does."""
    # The keys next to the empty-slot marker and the extremes, now and then.
    extremes = [-(2**63), -(2**63) + 1, 2**63 - 1, -1, 0]

    def key(rng: random.Random) -> object:
        if rng.random() < 0.01:
            return rng.choice(extremes)
        return rng.randrange(-span, span)

    most, held = drive_many_keys(max_keys ^ span, max_keys, ttl, rate, key)
    assert most >= least  # the table did grow
    if ttl is None:
        assert held in (None, max_keys)  # full before the first key was forgotten


@pytest.mark.parametrize("ttl", [None, 0.5])
def test_a_sharded_table_of_mixed_keys_evicts_identically(ttl: float | None) -> None:
    """`int`, `str`, `bytes` and big-int keys in a table split over 2 shards in the Rust core:
    pressure eviction picks the same keys as the reference (key order breaks ties across
    types), and without a TTL the table holds exactly `max_keys` before it forgets any."""
    kinds: list[Callable[[int], object]] = [
        int,
        str,
        lambda v: str(v).encode(),
        lambda v: v + 2**64,
    ]

    def key(rng: random.Random) -> object:
        return rng.choice(kinds)(rng.randrange(4000))

    rate = 0.01 if ttl is None else 10.0
    most, held = drive_many_keys(8192, 8192, ttl, rate, key)
    if ttl is None:
        assert held == 8192
        assert most > 8192 - 128  # forgets 8192 // 64 at a time, then fills up again
    else:
        assert held is not None  # swept
