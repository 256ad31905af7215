"""ResultCache: TTL on the cache's clock, LRU bound, statistics, threads, fork, bad input.

Runs on the active backend (`make test` runs it on both): the cache itself is pure Python, but
its `clock=` is the backend's ManualClock.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import pytest
from helpers import run_threads
from hypothesis import given
from hypothesis import strategies as st

from riprap import MISSING, ResultCache
from riprap.testing import ManualClock


def test_fresh_until_ttl_then_gone(clock: ManualClock) -> None:
    cache = ResultCache(10.0, 100, clock=clock)
    cache.put("k", "v")
    clock.advance(10.0)  # age == ttl: still fresh
    assert cache.get("k") == "v"
    clock.advance(1e-6)
    assert cache.get("k") is None
    assert cache.get_stats()["expirations"] == 1
    assert "k" not in cache


def test_put_again_restarts_the_ttl(clock: ManualClock) -> None:
    cache = ResultCache(10.0, 100, clock=clock)
    cache.put("k", 1)
    clock.advance(8.0)
    cache.put("k", 2)
    clock.advance(8.0)
    assert cache.get("k") == 2


def test_none_is_a_value_and_default_tells_a_miss(clock: ManualClock) -> None:
    cache = ResultCache(10.0, 100, clock=clock)
    cache.put("k", None)
    assert cache.get("k", MISSING) is None
    assert cache.get("other", MISSING) is MISSING
    s = cache.get_stats()
    assert (s["hits"], s["misses"]) == (1, 1)
    assert s["hit_rate"] == 0.5


def test_lru_evicts_the_least_recently_used(clock: ManualClock) -> None:
    cache = ResultCache(100.0, 3, clock=clock)
    for k in "abc":
        cache.put(k, k)
    assert cache.get("a") == "a"  # a is now the most recent
    cache.put("d", "d")  # evicts b
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == ["a", "c", "d"]
    cache.put("c", "c2")  # rewriting refreshes c, no eviction
    cache.put("e", "e")  # evicts a (c, d, e are more recent)
    assert cache.get("a") is None
    assert cache.get_stats()["evictions"] == 2
    assert len(cache) == 3


def test_len_drops_expired_entries(clock: ManualClock) -> None:
    cache = ResultCache(5.0, 10, clock=clock)
    cache.put(1, "x")
    clock.advance(3.0)
    cache.put(2, "y")
    assert len(cache) == 2
    clock.advance(3.0)
    assert len(cache) == 1
    assert cache.get_stats()["size"] == 1


def test_discard_and_clear(clock: ManualClock) -> None:
    cache = ResultCache(5.0, 10, clock=clock)
    cache.put(1, "x")
    cache.put(2, "y")
    cache.discard(1)
    cache.discard(99)
    assert cache.get(1) is None
    cache.clear()
    assert len(cache) == 0


@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["put", "get", "advance"]),
            st.integers(0, 6),
            st.sampled_from([0.0, 0.5, 2.0, 5.0]),
        ),
        max_size=80,
    )
)
def test_matches_a_model(ops: list[tuple[str, int, float]]) -> None:
    """An OrderedDict model of TTL + LRU agrees with the cache after every step."""
    clock = ManualClock()
    cache = ResultCache(3.0, 4, clock=clock)
    model: OrderedDict[int, tuple[int, float]] = OrderedDict()
    serial = 0
    for op, key, dt in ops:
        now = clock.now()
        if op == "put":
            serial += 1
            model.pop(key, None)
            if len(model) >= 4:
                model.popitem(last=False)
            model[key] = (serial, now + 3.0)
            cache.put(key, serial)
        elif op == "get":
            entry = model.get(key)
            expected = MISSING
            if entry is not None:
                if now <= entry[1]:
                    model.move_to_end(key)
                    expected = entry[0]
                else:
                    del model[key]
            assert cache.get(key, MISSING) == expected
        else:
            clock.advance(dt)
    now = clock.now()
    assert len(cache) == sum(1 for _, exp in model.values() if now <= exp)


def test_threads_share_one_bounded_cache() -> None:
    cache = ResultCache(1000.0, 64)

    def work(seed: int) -> None:
        for i in range(5000):
            key = (seed * 7 + i) % 200
            cache.put(key, key)
            got = cache.get((key + 1) % 200, MISSING)
            assert got is MISSING or got == (key + 1) % 200

    run_threads(8, work)
    s = cache.get_stats()
    assert s["size"] == 64  # 200 distinct keys went in: full, and never more
    assert s["hits"] + s["misses"] == 8 * 5000
    assert s["evictions"] >= 200 - 64


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_forked_child_starts_empty(clock: ManualClock) -> None:
    cache = ResultCache(10.0, 10, clock=clock)
    cache.put("k", 1)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ok = cache.get("k") is None and cache.get_stats()["hits"] == 0
            cache.put("k", 2)
            ok = ok and cache.get("k") == 2
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.close(r)
    os.waitpid(pid, 0)
    assert cache.get("k") == 1  # the parent's entry is untouched


@pytest.mark.parametrize(
    ("ttl", "max_entries", "exc", "message"),
    [
        (0.0, 10, ValueError, "ttl must be > 0.0, got 0.0"),
        (-1.0, 10, ValueError, "ttl must be > 0.0"),
        (float("nan"), 10, ValueError, "ttl must be a finite number, got nan"),
        (float("inf"), 10, ValueError, "ttl must be a finite number, got inf"),
        ("5", 10, TypeError, "ttl must be a number, got str"),
        (True, 10, TypeError, "ttl must be a number, got bool"),
        (5.0, 0, ValueError, "max_entries must be >= 1, got 0"),
        (5.0, 2.5, TypeError, "max_entries must be an int, got float"),
        (5.0, True, TypeError, "max_entries must be an int, got bool"),
    ],
)
def test_bad_configuration_names_the_field(
    ttl: object, max_entries: object, exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc, match=message.replace("(", r"\(")):
        ResultCache(ttl, max_entries)  # type: ignore[arg-type]


def test_clock_must_be_a_manual_clock() -> None:
    with pytest.raises(
        TypeError, match=r"clock must be a riprap\.testing\.ManualClock"
    ):
        ResultCache(1.0, 1, clock=object())


def test_unhashable_keys_are_refused(clock: ManualClock) -> None:
    cache = ResultCache(1.0, 1, clock=clock)
    with pytest.raises(TypeError):
        cache.put(["list"], 1)  # type: ignore[arg-type]
