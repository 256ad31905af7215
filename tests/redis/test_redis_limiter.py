"""RateLimiter and KeyedRateLimiter with `storage=`: what is stored, how it is shared, how every
path (try, acquire, async, with, decorators) decides, and what is refused at construction."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis

import riprap
from riprap import KeyedRateLimiter, RateLimiter, RateLimitExceeded, RedisStorage
from riprap._redis.server import RedisServer
from riprap.testing import ManualClock

NS = 10**9


def shared(url: str, clock: ManualClock, **kw: Any) -> RateLimiter:
    """A limiter on client time (the manual clock), so decisions are exact."""
    kw.setdefault("name", "api")
    return RateLimiter(
        kw.pop("rate", 10.0),
        kw.pop("burst", None),
        storage=url,
        clock=clock,
        time_source="client",
        **kw,
    )


def test_two_objects_with_one_name_share_one_bucket(
    url: str, clock: ManualClock
) -> None:
    a, b = shared(url, clock, burst=3), shared(url, clock, burst=3)
    other = shared(url, clock, burst=3, name="other")
    assert [a.try_acquire(), b.try_acquire(), a.try_acquire()] == [True] * 3
    assert not b.try_acquire()
    assert not a.try_acquire()
    assert other.try_acquire()  # a different name is a different bucket (pybreaker#88)
    clock.advance(0.1)
    assert b.try_acquire()
    assert not a.try_acquire()


def test_reg_D7_the_bucket_is_one_key_holding_the_tat_in_nanoseconds(
    url: str, r: Any, clock: ManualClock
) -> None:
    clock.advance(1000.0)
    lim = shared(url, clock, rate=3.0, burst=2)
    interval = -(-NS // 3)  # 1/rate in whole ns, rounded up, as in process
    assert lim.try_acquire()
    assert r.keys("*") == [b"riprap:{api}:gcra"]
    assert int(r.get("riprap:{api}:gcra")) == 1000 * NS + interval
    assert lim.try_acquire()
    assert int(r.get("riprap:{api}:gcra")) == 1000 * NS + 2 * interval
    # TTL: until the bucket is full again, plus tau + T (D7), in whole ms.
    tau = 2 * interval
    ttl = r.pttl("riprap:{api}:gcra")
    assert 0 < ttl <= -(-(2 * interval) // 10**6) + -(-(tau + interval) // 10**6)
    assert ttl >= (2 * interval + tau + interval) // 10**6 - 50


def test_refusal_says_how_long_and_acquire_waits_exactly(
    url: str, clock: ManualClock
) -> None:
    lim = shared(url, clock, rate=4.0, burst=1)
    lim.acquire()
    with pytest.raises(RateLimitExceeded) as info:
        lim.acquire(timeout=0.2)
    assert info.value.retry_after == 0.25
    assert info.value.name == "api"
    lim.acquire()  # waits on the manual clock: it advances by exactly the wait
    assert clock.now() == 0.25
    assert lim.get_stats()["waited"] == 1


def test_a_waiter_that_gives_up_hands_its_slot_back(url: str) -> None:
    class Interrupted(ManualClock):
        def sleep(self, seconds: float) -> None:
            raise KeyboardInterrupt

    clock = Interrupted()
    lim = shared(url, clock, rate=1.0, burst=1)
    assert lim.try_acquire()
    with pytest.raises(KeyboardInterrupt):
        lim.acquire()
    ManualClock.advance(clock, 1.0)
    assert lim.try_acquire()  # the interrupted reservation was given back
    assert not lim.try_acquire()


def test_a_slot_reserved_behind_stays_spent(url: str, clock: ManualClock) -> None:
    lim = shared(url, clock, rate=1.0, burst=1)
    b = lim._bucket
    assert lim.try_acquire()
    first = b.ask(lim._key, NS, "")
    second = b.ask(lim._key, NS, "")
    assert (first[0], second[0]) == (2, 2)
    b.give_back(lim._key, first)  # someone reserved after it: cannot be given back
    clock.advance(2.0)
    assert not lim.try_acquire()
    b.give_back(lim._key, second)  # the last one can
    assert lim.try_acquire()


def test_with_and_the_decorator_take_one_token(url: str, clock: ManualClock) -> None:
    lim = shared(url, clock, rate=2.0, burst=1, on_limit="raise")

    @lim
    def f(x: int) -> int:
        return x + 1

    assert f(1) == 2
    with pytest.raises(RateLimitExceeded):
        f(1)
    with pytest.raises(RateLimitExceeded):
        with lim:
            pass
    waits = shared(url, clock, rate=2.0, burst=1, name="w")
    with waits:
        pass
    with waits:  # on_limit="wait": the manual clock moves to the slot
        pass
    assert clock.now() == 0.5
    assert f.__name__ == "f"
    assert f.__wrapped__ is not None


def test_async_paths_share_the_bucket(url: str, clock: ManualClock) -> None:
    lim = shared(url, clock, rate=2.0, burst=1)
    raising = shared(url, clock, rate=2.0, burst=1, on_limit="raise")

    @lim
    async def g() -> str:
        return "ok"

    async def main() -> None:
        await lim.acquire_async()
        assert not lim.try_acquire()
        assert await g() == "ok"  # waited half a second
        assert clock.now() == 0.5
        async with lim:
            pass
        assert clock.now() == 1.0
        with pytest.raises(RateLimitExceeded):
            await lim.acquire_async(timeout=0.1)
        with pytest.raises(RateLimitExceeded):
            async with raising:
                pass
        await lim.storage.aclose()

    asyncio.run(main())
    assert asyncio.iscoroutinefunction(g)
    stats = lim.get_stats()
    assert (stats["admitted"], stats["waited"]) == (3, 2)


class ParkingClock(ManualClock):
    """A manual clock whose `asleep` parks the caller until the test cancels it."""

    async def asleep(self, seconds: float) -> None:
        self.parked = asyncio.get_running_loop().create_future()
        await self.parked


def test_a_cancelled_async_waiter_hands_its_slot_back(url: str) -> None:
    clock = ParkingClock()
    lim = shared(url, clock, rate=1.0, burst=1)

    async def main() -> None:
        assert lim.try_acquire()
        waiter = asyncio.ensure_future(lim.acquire_async())
        while not hasattr(clock, "parked"):
            await asyncio.sleep(0)  # the waiter reserves its slot in Redis, then parks
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        # The give-back runs in a task of its own (nothing is awaited while cancelled).
        await asyncio.gather(*riprap._redis.gcra.PENDING)
        await lim.storage.aclose()

    asyncio.run(main())
    clock.advance(1.0)
    assert lim.try_acquire()  # the cancelled reservation (due at 1.0) was given back
    assert not lim.try_acquire()
    assert lim.get_stats()["waited"] == 0


def test_keyed_buckets_are_per_key_and_key_types_stay_apart(
    url: str, r: Any, clock: ManualClock
) -> None:
    keyed = KeyedRateLimiter(
        1.0, 1, name="k", storage=url, clock=clock, time_source="client"
    )
    assert [keyed.try_acquire(k) for k in (1, "1", b"1", "a")] == [True] * 4
    assert [keyed.try_acquire(k) for k in (1, "1", b"1", "a")] == [False] * 4
    assert sorted(r.keys("*")) == [
        b"riprap:{k:b1}:gcra",
        b"riprap:{k:i1}:gcra",
        b"riprap:{k:s1}:gcra",
        b"riprap:{k:sa}:gcra",
    ]
    with pytest.raises(TypeError, match="key must be an int, str or bytes, got bool"):
        keyed.try_acquire(True)
    with pytest.raises(ValueError, match=r"n must be <= burst \(1.0\), got 2"):
        keyed.try_acquire("a", 2)
    with pytest.raises(RateLimitExceeded):
        keyed.acquire("a", timeout=0.5)
    keyed.acquire("a")
    assert clock.now() == 1.0

    @keyed(key=lambda user: user, on_limit="raise")
    def handle(user: str) -> str:
        return user

    assert handle("new") == "new"
    with pytest.raises(RateLimitExceeded):
        handle("new")

    @keyed(key=lambda user: user)
    async def ahandle(user: str) -> str:
        return user

    async def main() -> None:
        assert await ahandle("z") == "z"
        assert await ahandle("z") == "z"  # waited
        await keyed.acquire_async("y")
        await keyed.storage.aclose()

    asyncio.run(main())
    assert clock.now() == 2.0
    stats = keyed.get_stats()
    assert set(stats) == set(riprap.SharedKeyedRateLimiterStats.__required_keys__)
    with pytest.raises(TypeError, match="KeyedRateLimiter needs key="):
        keyed(lambda: None)  # type: ignore[call-overload]


def test_stats_have_the_declared_keys_and_no_password(
    url: str, clock: ManualClock
) -> None:
    lim = shared(url, clock)
    lim.try_acquire()
    stats = lim.get_stats()
    assert set(stats) == set(riprap.SharedRateLimiterStats.__required_keys__)
    assert stats["storage"] == url
    assert (stats["rate"], stats["burst"], stats["admitted"]) == (10.0, 10.0, 1)
    assert (stats["time_source"], stats["local_fraction"]) == ("client", 1.0)
    assert isinstance(lim, RateLimiter)
    assert lim.rate == 10.0
    assert lim.burst == 10.0
    assert "storage=" in repr(lim)


def test_password_never_appears(caplog: pytest.LogCaptureFixture) -> None:
    with RedisServer(password="s3cr3t-pw") as server:
        lim = RateLimiter(5, name="p", storage=server.url)
        assert lim.try_acquire()
        wrong = RedisStorage(server.url.replace("s3cr3t-pw", "wr0ng-pw"))
        bad = RateLimiter(5, name="p", storage=wrong, on_storage_error="fail_closed")
        with caplog.at_level(logging.DEBUG, logger="riprap"):
            assert not bad.try_acquire()
            with pytest.raises(RateLimitExceeded) as info:
                bad.acquire()
        texts = [
            repr(lim),
            str(lim.get_stats()),
            repr(lim.storage),
            str(lim.storage),
            repr(wrong),
            str(bad.get_stats()),
            caplog.text,
            str(info.value),
            repr(info.value.__cause__),
            str(info.value.__cause__),
        ]
        assert bad.get_stats()["storage_errors"] == 1
        assert "redis://:***@127.0.0.1" in repr(lim)
        for text in texts:
            assert "s3cr3t-pw" not in text
            assert "wr0ng-pw" not in text
        with pytest.raises(ValueError) as bad_url:
            RedisStorage("redis://:s3cr3t-pw@127.0.0.1:notaport/0")
        assert "s3cr3t-pw" not in str(bad_url.value)


def test_client_forms(url: str, clock: ManualClock) -> None:
    sync = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    lim = RateLimiter(1, name="f", storage=sync, clock=clock, time_source="client")
    assert lim.try_acquire()
    both = RedisStorage(
        client=sync,
        async_client=redis.asyncio.Redis.from_url(
            url, socket_timeout=1, socket_connect_timeout=1
        ),
    )
    same = RateLimiter(1, name="f", storage=both, clock=clock, time_source="client")
    assert not same.try_acquire()
    only_async = RateLimiter(
        1,
        name="f",
        storage=redis.asyncio.Redis.from_url(
            url, socket_timeout=1, socket_connect_timeout=1
        ),
        clock=clock,
        time_source="client",
    )
    with pytest.raises(TypeError, match="has only an async client"):
        only_async.try_acquire()

    async def main() -> None:
        with pytest.raises(RateLimitExceeded):
            await only_async.acquire_async(timeout=0)
        with pytest.raises(RateLimitExceeded):
            await lim.acquire_async(timeout=0)  # a sync client, run in a thread
        await both._async.aclose()
        await only_async.storage._async.aclose()

    asyncio.run(main())
    sync.close()


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({}, ValueError, "name is required with storage="),
        ({"name": ""}, ValueError, "name is required with storage="),
        ({"name": 3}, TypeError, "name must be a str or None, got int"),
        (
            {"name": "a", "local_fraction": 0},
            ValueError,
            "local_fraction must be > 0.0",
        ),
        (
            {"name": "a", "local_fraction": 1.5},
            ValueError,
            "local_fraction must be <= 1.0",
        ),
        (
            {"name": "a", "local_fraction": "x"},
            TypeError,
            "local_fraction must be a number",
        ),
        ({"name": "a", "time_source": "gps"}, ValueError, "time_source must be one of"),
        (
            {"name": "a", "on_storage_error": "x"},
            ValueError,
            "on_storage_error must be",
        ),
    ],
)
def test_invalid_shared_configuration_names_the_field(
    url: str, kwargs: dict[str, Any], exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc, match=message):
        RateLimiter(10, storage=url, **kwargs)
    with pytest.raises(exc, match=message):
        KeyedRateLimiter(10, storage=url, **kwargs)


def test_invalid_storage_is_refused_before_any_connection() -> None:
    with pytest.raises(ValueError, match="must start with redis://"):
        RateLimiter(1, name="a", storage="http://localhost")
    with pytest.raises(TypeError, match="storage must be a redis:// URL"):
        RateLimiter(1, name="a", storage=3.5)
    with pytest.raises(ValueError, match="prefix must not contain"):
        RedisStorage("redis://localhost", prefix="a{b}")
    with pytest.raises(TypeError, match="either url or client"):
        RedisStorage("redis://localhost", client=redis.Redis())
    with pytest.raises(TypeError, match="needs a url"):
        RedisStorage()
    with pytest.raises(ValueError, match=r"socket_timeout must be > 0\.0"):
        RedisStorage("redis://localhost", socket_timeout=0)
    with pytest.raises(ValueError, match="has no socket_timeout"):
        RedisStorage(client=redis.Redis(socket_timeout=None))
    with pytest.raises(
        TypeError, match=r"pass a redis\.asyncio\.Redis as async_client"
    ):
        RedisStorage(client=redis.asyncio.Redis(socket_timeout=1))

    class Mine(RateLimiter):
        pass

    with pytest.raises(
        TypeError, match=r"storage= is supported on riprap\.RateLimiter"
    ):
        Mine(1, name="a", storage="redis://localhost")
    # Nothing connected: a closed port is fine until the first call.
    RateLimiter(1, name="a", storage="redis://127.0.0.1:1/0")


def test_prefix_is_configurable(
    server: RedisServer, r: Any, clock: ManualClock
) -> None:
    storage = RedisStorage(server.url, prefix="myapp")
    lim = RateLimiter(1, name="n", storage=storage, clock=clock, time_source="client")
    assert lim.try_acquire()
    assert r.keys("*") == [b"myapp:{n}:gcra"]


def test_reg_D3_a_thousand_acquires_in_one_millisecond_are_all_counted(
    url: str, r: Any, clock: ManualClock
) -> None:
    # cameri/nostream#467: members that collide within one millisecond were lost. Here a
    # thousand decisions at the same instant each move the TAT by exactly T.
    lim = shared(url, clock, rate=1.0, burst=1000)
    assert all(lim.try_acquire() for _ in range(1000))
    assert not lim.try_acquire()
    assert int(r.get("riprap:{api}:gcra")) == 1000 * NS
    # On server time too, within as little time as Redis takes: exactly `burst` admitted.
    fast = RateLimiter(0.001, 1000, name="fast", storage=url)
    assert sum(fast.try_acquire() for _ in range(1001)) == 1000


def test_reg_D9_local_fraction_scales_the_fallback_only(clock: ManualClock) -> None:
    lim = RateLimiter(
        100,
        name="frac",
        storage=RedisStorage("redis://127.0.0.1:1/0", retry_interval=60),
        local_fraction=0.25,
        clock=clock,
    )
    assert (lim.rate, lim.burst) == (100.0, 100.0)
    assert (
        sum(lim.try_acquire() for _ in range(100)) == 25
    )  # the local bucket: 25 at once
    stats = lim.get_stats()
    assert (stats["admitted"], stats["rejected"], stats["storage_errors"]) == (
        25,
        75,
        1,
    )
    assert stats["fallback_decisions"] == 0  # "local": the local bucket's own counters
    with pytest.raises(ValueError, match=r"local_fraction 0\.4: the local fallback"):
        RateLimiter(1e9, name="x", storage="redis://127.0.0.1:1/0", local_fraction=0.4)
