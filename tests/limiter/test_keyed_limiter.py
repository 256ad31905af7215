"""KeyedRateLimiter: per-key buckets, key types, bounded memory, decorator.

Runs on the active backend. Tests named `test_reg_<id>` guard against a bug or weakness a peer
library shipped; comments cite the issue where there is one.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import math

import pytest
from helpers import os_threads

from riprap import KeyedRateLimiter, RateLimitExceeded
from riprap._backend import core
from riprap.testing import ManualClock


def test_each_key_has_its_own_bucket(clock: ManualClock) -> None:
    lim = KeyedRateLimiter(1, 2, clock=clock)
    assert lim.try_acquire("alice", 2)
    assert not lim.try_acquire("alice")
    assert lim.try_acquire("bob")
    assert lim.try_acquire("bob")
    assert not lim.try_acquire("bob")
    clock.advance(1.0)
    assert lim.try_acquire("alice")
    assert not lim.try_acquire("alice")
    assert len(lim) == 2
    s = lim.get_stats()
    assert (s["admitted"], s["rejected"], s["keys"], s["evicted"]) == (4, 3, 2, 0)
    assert (s["rate"], s["burst"], s["name"]) == (1.0, 2.0, None)


def test_key_types_are_distinct_and_only_int_str_bytes(clock: ManualClock) -> None:
    lim = KeyedRateLimiter(1, 1, clock=clock)
    keys: list[object] = [1, "1", b"1", 2**64, -(2**70), "ключ", "\udcff", b"\x00"]
    for key in keys:
        assert lim.try_acquire(key), key
        assert not lim.try_acquire(key), key
    assert len(lim) == len(keys)
    for bad, name in [
        (True, "bool"),
        (1.0, "float"),
        (None, "NoneType"),
        ((1,), "tuple"),
    ]:
        with pytest.raises(
            TypeError, match=f"key must be an int, str or bytes, got {name}"
        ):
            lim.try_acquire(bad)
    with pytest.raises(TypeError, match="got bytearray"):
        lim.try_acquire(bytearray(b"1"))
    assert len(lim) == len(keys)


def test_subclasses_of_key_types_share_the_plain_values_bucket(
    clock: ManualClock,
) -> None:
    class Color(enum.IntEnum):
        RED = 7

    class Name(str):
        def __str__(self) -> str:
            return "something else"

    lim = KeyedRateLimiter(1, 1, clock=clock)
    assert lim.try_acquire(7)
    assert not lim.try_acquire(Color.RED)
    assert lim.try_acquire(Name("ann"))
    assert not lim.try_acquire("ann")
    big = 2**80

    class Big(int):
        def __str__(self) -> str:
            return "0"

    assert lim.try_acquire(big)
    assert not lim.try_acquire(Big(big))


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"max_keys": 0}, ValueError, "max_keys must be >= 1, got 0"),
        ({"max_keys": -5}, ValueError, "max_keys must be >= 1, got -5"),
        ({"max_keys": True}, TypeError, "max_keys must be an int, got bool"),
        ({"max_keys": 10.0}, TypeError, "max_keys must be an int, got float"),
        ({"idle_ttl": 0}, ValueError, "idle_ttl must be > 0.0, got 0.0"),
        ({"idle_ttl": -1}, ValueError, "idle_ttl must be > 0.0, got -1.0"),
        (
            {"idle_ttl": math.nan},
            ValueError,
            "idle_ttl must be a finite number, got nan",
        ),
        ({"idle_ttl": "1"}, TypeError, "idle_ttl must be a number, got str"),
        ({"burst": 0}, ValueError, "burst must be >= 1.0, got 0.0"),
        ({"name": b"x"}, TypeError, "name must be a str or None, got bytes"),
    ],
)
def test_invalid_configuration_names_the_field(
    kwargs: dict[str, object], exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc, match=message):
        KeyedRateLimiter(10, **kwargs)  # type: ignore[arg-type]


def test_the_core_refuses_storage_and_points_to_the_public_class() -> None:
    with pytest.raises(NotImplementedError, match=r"use riprap\.KeyedRateLimiter\("):
        core.KeyedRateLimiter(10, storage="redis://localhost")


def test_defaults_and_properties(clock: ManualClock) -> None:
    lim = KeyedRateLimiter(0.5, name="per-ip", clock=clock)
    assert (lim.rate, lim.burst, lim.max_keys, lim.idle_ttl) == (
        0.5,
        1.0,
        1_000_000,
        None,
    )
    assert lim.name == "per-ip"
    assert lim.clock is clock
    assert repr(lim) == (
        "KeyedRateLimiter(rate=0.5, burst=1.0, name='per-ip', max_keys=1000000)"
    )
    assert KeyedRateLimiter(1, idle_ttl=2.5).idle_ttl == 2.5


def test_idle_keys_are_evicted_first_and_that_changes_nothing(
    clock: ManualClock,
) -> None:
    lim = KeyedRateLimiter(1, 1, max_keys=3, clock=clock)
    for k in (1, 2, 3):
        assert lim.try_acquire(k)
    clock.advance(1.0)  # all three buckets are full again (idle)
    assert lim.try_acquire(1)  # key 1 is busy again
    assert lim.try_acquire(4)  # needs room: forgets the idle keys 2 and 3, not key 1
    assert len(lim) == 2
    assert lim.get_stats()["evicted"] == 2
    assert not lim.try_acquire(1)  # key 1 kept its state
    assert lim.try_acquire(
        2
    )  # a forgotten idle key starts full, exactly as it would have


def test_busy_keys_closest_to_full_are_evicted_when_none_is_idle(
    clock: ManualClock,
) -> None:
    lim = KeyedRateLimiter(1, 3, max_keys=2, clock=clock)
    assert lim.try_acquire("heavy", 3)  # empty until t = 3 s
    assert lim.try_acquire("light", 1)  # full again at t = 1 s
    assert lim.try_acquire("new")
    assert lim.get_stats()["evicted"] == 1
    assert not lim.try_acquire("heavy")  # the heavy user was not reset
    assert lim.try_acquire(
        "light", 3
    )  # the light one was forgotten: a full bucket again


def test_reg_L10_memory_is_bounded_by_max_keys(clock: ManualClock) -> None:
    # PyrateLimiter#183/#136/#156: a thread and unbounded memory per bucket. Threads are
    # counted by the kernel, so a native one would show too.
    before = os_threads()
    lim = KeyedRateLimiter(1, 1, max_keys=500, clock=clock)
    for k in range(20_000):
        assert lim.try_acquire(k)
        assert len(lim) <= 500
    s = lim.get_stats()
    assert s["keys"] + s["evicted"] == 20_000
    assert os_threads() - before == set()


def test_max_keys_100_000_holds_every_key_then_forgets_one_batch(
    clock: ManualClock,
) -> None:
    # The Rust core splits a table this big into 16 shards; the bound is still the whole
    # table's: 100,000 keys held, none forgotten, before the first eviction.
    lim = KeyedRateLimiter(0.001, 1, max_keys=100_000, clock=clock)
    for k in range(100_000):
        assert lim.try_acquire(k)  # each bucket now empty for 1000 s: none idle
    assert len(lim) == 100_000
    assert lim.get_stats()["evicted"] == 0
    # The 100,001st key: none is idle, so the 100_000 // 64 = 1562 keys closest to full go.
    # All share one theoretical arrival time, so key order decides: keys 0..1561.
    assert lim.try_acquire(100_000)
    assert lim.get_stats()["evicted"] == 1562
    assert len(lim) == 100_000 - 1562 + 1
    kept = range(1562, 100_001)
    assert not any(lim.try_acquire(k) for k in kept)  # all still tracked, still empty
    assert len(lim) == len(kept)  # so the forgotten ones are exactly 0..1561
    assert lim.try_acquire(0)  # which start afresh
    assert lim.get_stats()["evicted"] == 1562


def test_idle_keys_anywhere_go_before_a_busy_one_in_a_big_table(
    clock: ManualClock,
) -> None:
    lim = KeyedRateLimiter(1, 1, max_keys=8192, clock=clock)
    for k in range(8192):
        assert lim.try_acquire(k)
    clock.advance(1.0)  # every bucket full again
    assert lim.try_acquire(0)  # key 0 busy again
    assert lim.try_acquire("new")  # forgets the 8191 idle keys, wherever they are
    assert (len(lim), lim.get_stats()["evicted"]) == (2, 8191)
    assert not lim.try_acquire(0)


def test_a_few_idle_keys_are_topped_up_to_a_batch_with_the_closest_to_full(
    clock: ManualClock,
) -> None:
    # An eviction reads every key, so it always frees max(1, max_keys // 64) = 128 keys here:
    # the idle ones first, then the busy ones closest to full.
    lim = KeyedRateLimiter(1, 2, max_keys=8192, clock=clock)
    for k in range(10):
        assert lim.try_acquire(k)  # idle again at t = 1 s
    # Busy until t = 2 s + k µs: key 10 is the closest to full.
    for k in range(10, 8192):
        clock.advance(1e-6)
        assert lim.try_acquire(k, 2)
    clock.advance(1.0)
    # Forgets keys 0..9 (idle) and 10..127 (closest to full).
    assert lim.try_acquire("new")
    assert (len(lim), lim.get_stats()["evicted"]) == (8192 - 128 + 1, 128)
    assert not any(lim.try_acquire(k, 2) for k in range(128, 8192))  # still tracked
    # So the forgotten keys are exactly 0..127: they start full (127 of them fill the table).
    assert all(lim.try_acquire(k, 2) for k in range(127))
    assert (len(lim), lim.get_stats()["evicted"]) == (8192, 128)


def test_idle_ttl_sweeps_a_big_table_at_once(clock: ManualClock) -> None:
    lim = KeyedRateLimiter(1, 1, max_keys=1_000_000, idle_ttl=10.0, clock=clock)
    for k in range(1000):
        assert lim.try_acquire(str(k))
    clock.advance(12.0)  # every bucket full since t = 1 s
    assert lim.try_acquire(b"x")  # one call sweeps every key
    assert (len(lim), lim.get_stats()["evicted"]) == (1, 1000)


def test_idle_ttl_forgets_long_full_buckets_only(clock: ManualClock) -> None:
    lim = KeyedRateLimiter(1, 1, max_keys=100, idle_ttl=10.0, clock=clock)
    assert lim.try_acquire("a")  # full again at 1 s
    clock.advance(9.0)
    assert lim.try_acquire("b")  # full again at 10 s
    clock.advance(3.0)  # t = 12: "a" has been full for 11 s, "b" for 2 s
    assert lim.try_acquire("c")
    assert len(lim) == 2
    assert lim.get_stats()["evicted"] == 1
    assert lim.try_acquire("b")
    assert not lim.try_acquire("b")
    assert len(lim) == 2
    slow = KeyedRateLimiter(0.01, 1, max_keys=100, idle_ttl=1.0, clock=clock)
    assert slow.try_acquire("x")  # empty for the next 100 s
    clock.advance(50.0)
    assert slow.try_acquire("y")
    assert not slow.try_acquire("x")  # not full yet: never forgotten by age


def test_acquire_waits_per_key(clock: ManualClock) -> None:
    lim = KeyedRateLimiter(2, 1, clock=clock)
    lim.acquire("a")
    lim.acquire("b")
    assert clock.now() == 0.0
    lim.acquire("a")
    assert clock.now() == 0.5
    with pytest.raises(RateLimitExceeded) as info:
        lim.acquire("a", timeout=0.1)
    assert info.value.retry_after == 0.5
    assert lim.get_stats()["waited"] == 1

    async def main() -> None:
        await lim.acquire_async("b")  # b's bucket refilled by 0.5 s
        assert clock.now() == 0.5
        await lim.acquire_async("b")
        assert clock.now() == 1.0
        with pytest.raises(RateLimitExceeded):
            await lim.acquire_async("b", timeout=0)

    asyncio.run(main())


def test_decorator_limits_per_key(clock: ManualClock) -> None:
    lim = KeyedRateLimiter(1, 1, name="per-client", clock=clock)
    served: list[tuple[str, float]] = []

    @lim(key=lambda client, path: client, on_limit="raise")
    def handle(client: str, path: str) -> str:
        served.append((client, clock.now()))
        return f"{client}{path}"

    assert handle("10.0.0.1", "/a") == "10.0.0.1/a"
    assert handle("10.0.0.2", "/a") == "10.0.0.2/a"
    with pytest.raises(RateLimitExceeded) as info:
        handle("10.0.0.1", "/b")
    assert info.value.name == "per-client"
    assert handle.__name__ == "handle"
    assert list(inspect.signature(handle).parameters) == ["client", "path"]

    @lim(key=lambda client: client)
    def wait_for_it(client: str) -> float:
        return clock.now()

    assert wait_for_it("10.0.0.2") == 1.0  # waited for its bucket
    assert served == [("10.0.0.1", 0.0), ("10.0.0.2", 0.0)]


def test_async_decorator_limits_per_key(clock: ManualClock) -> None:
    lim = KeyedRateLimiter(2, 1, clock=clock)

    @lim(key=lambda user, **_: user)
    async def fetch(user: int, *, page: int = 0) -> tuple[int, int, float]:
        return user, page, clock.now()

    assert inspect.iscoroutinefunction(fetch)

    async def main() -> None:
        assert await fetch(1) == (1, 0, 0.0)
        assert await fetch(2, page=3) == (2, 3, 0.0)
        assert await fetch(1) == (1, 0, 0.5)

    asyncio.run(main())


def test_reg_B4_a_raising_key_function_takes_no_token(clock: ManualClock) -> None:
    # resilience4j/resilience4j#2324: a raising user callable must leave nothing taken.
    lim = KeyedRateLimiter(1, 1, clock=clock)

    def key(x: object) -> object:
        if x is None:
            raise LookupError("no client id")
        return x

    @lim(key=key)
    def f(x: object) -> object:
        return x

    @lim(key=key)
    async def af(x: object) -> object:
        return x

    with pytest.raises(LookupError):
        f(None)
    with pytest.raises(TypeError, match="key must be an int, str or bytes, got float"):
        f(1.5)

    async def main() -> None:
        with pytest.raises(LookupError):
            await af(None)

    asyncio.run(main())
    s = lim.get_stats()
    assert (s["admitted"], s["rejected"], s["keys"]) == (0, 0, 0)
    assert f("ok") == "ok"


def test_decorator_needs_a_key() -> None:
    lim = KeyedRateLimiter(1)
    with pytest.raises(TypeError, match="needs key="):
        lim(lambda: None)
    with pytest.raises(TypeError, match="key must be callable"):
        lim(key="client")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_limit must be one of"):
        lim(key=lambda: 1, on_limit="drop")

    def direct(x: int) -> int:
        return x

    assert lim(direct, key=lambda x: x)(3) == 3


def test_keyed_methods_bind(clock: ManualClock) -> None:
    lim = KeyedRateLimiter(1, 1, clock=clock)

    class Handler:
        @lim(key=lambda self, user: user, on_limit="raise")
        def get(self, user: str) -> str:
            return user.upper()

    h = Handler()
    assert h.get("ann") == "ANN"
    assert h.get("bob") == "BOB"
    with pytest.raises(RateLimitExceeded):
        h.get("ann")


def test_waiters_on_one_key_do_not_hold_up_others(clock: ManualClock) -> None:
    lim = KeyedRateLimiter(1, 1, clock=clock)
    assert lim.try_acquire("a")
    ticket = lim._reserve("a", 1, None)
    assert ticket
    assert lim._remaining("a", ticket) == 1.0
    assert lim.try_acquire("b")
    # The waiter's key is pinned: with max_keys reached it is not evicted.
    small = KeyedRateLimiter(1, 1, max_keys=1, clock=clock)
    assert small.try_acquire(1)
    t = small._reserve(1, 1, None)
    assert small.try_acquire(2)
    assert small._remaining(1, t) == 1.0
    small._cancel(1, t)
    assert len(small) == 2  # over the cap while a waiter needed its key; shrinks later


@pytest.mark.parametrize(
    "exc", [KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError]
)
def test_control_flow_exceptions_pass_through_keyed_wrappers(
    clock: ManualClock, exc: type[BaseException]
) -> None:
    # A control-flow exception through the keyed limiter: propagated unchanged, the token spent,
    # nothing counted as rejected.
    lim = KeyedRateLimiter(1000, 1000, clock=clock)
    raised = exc()

    @lim(key=lambda k: k)
    def f(k: str) -> None:
        raise raised

    @lim(key=lambda k: k)
    async def af(k: str) -> None:
        raise raised

    with pytest.raises(exc) as info:
        f("a")
    assert info.value is raised

    async def main() -> None:
        with pytest.raises(exc) as ainfo:
            await af("a")
        assert ainfo.value is raised

    asyncio.run(main())
    s = lim.get_stats()
    assert (s["admitted"], s["rejected"]) == (2, 0)


def test_a_cancelled_keyed_waiter_gives_its_slot_back(clock: ManualClock) -> None:
    # A cancelled wait on the keyed limiter: on a clock whose asleep suspends, cancel a queued
    # waiter.
    from limiter_helpers import StepClock, settle

    async def main() -> tuple[float, float]:
        step = StepClock()
        lim = KeyedRateLimiter(1, 1, clock=step)
        assert lim.try_acquire("k")
        waiter = asyncio.create_task(lim.acquire_async("k"))
        await settle()
        waiter.cancel()
        await settle()
        with pytest.raises(RateLimitExceeded) as info:
            lim.acquire("k", timeout=0)
        assert waiter.cancelled()
        return info.value.retry_after, lim.get_stats()["waited"]

    retry_after, waited = asyncio.run(main())
    assert retry_after == 1.0  # the cancelled waiter's slot is free again
    assert waited == 0
