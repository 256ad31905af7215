"""What happens when Redis fails: stopped, paused, out of memory, scripts flushed, TIME refused.

These are real-time audits (the behaviour is about time: how long a call may take when Redis
does not answer), bounded and few. Each test has a private redis-server to stop and pause.
A call must decide, as its `on_storage_error` mode says, within `socket_timeout` + 100 ms; the
storage error is counted; and once Redis answers again, calls use it again by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from riprap import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    RateLimiter,
    RateLimitExceeded,
    RedisStorage,
)
from riprap._redis.server import RedisServer

TIMEOUT = 0.2  # socket and connect timeouts of the storage under test
SLACK = 0.1


def storage(server: RedisServer) -> RedisStorage:
    return RedisStorage(
        server.url,
        socket_timeout=TIMEOUT,
        connect_timeout=TIMEOUT,
        retry_interval=0.2,
    )


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    try:
        result: Any = call()
    except Exception as e:
        result = e
    return result, time.monotonic() - start


def until_redis_decides(limiter: RateLimiter, server: RedisServer) -> None:
    """Call until a decision comes from Redis again (a real-time wait, bounded)."""
    client = server.client()
    deadline = time.monotonic() + 10.0
    before = limiter.get_stats()["storage_errors"]
    while not client.exists("riprap:{f}:gcra"):
        assert time.monotonic() < deadline, "calls did not go back to Redis"
        limiter.try_acquire()
        time.sleep(0.05)
    client.close()
    assert limiter.get_stats()["storage_errors"] <= before + 1


EXPECTED = {
    "local": [True, True, False],
    "fail_open": [True] * 3,
    "fail_closed": [False] * 3,
}


@pytest.mark.parametrize("mode", ["local", "fail_open", "fail_closed"])
def test_reg_D4_F14_limiter_stopped_paused_flushed(
    private_server: RedisServer, mode: str
) -> None:
    lim = RateLimiter(
        0.001, 2, name="f", storage=storage(private_server), on_storage_error=mode
    )
    assert lim.try_acquire()  # connected, decided by Redis
    private_server.stop()
    first, took = timed(lim.try_acquire)
    assert took <= TIMEOUT + SLACK
    rest = [lim.try_acquire(), lim.try_acquire()]  # Redis is skipped: no waiting
    assert [first, *rest] == EXPECTED[mode]
    stats = lim.get_stats()
    assert stats["storage_errors"] == 1
    assert stats["fallback_decisions"] == (0 if mode == "local" else 3)
    if mode == "fail_closed":
        with pytest.raises(RateLimitExceeded) as info:
            lim.acquire()
        assert isinstance(info.value.__cause__, redis.ConnectionError)

    private_server.start()  # the same port, empty
    until_redis_decides(lim, private_server)

    private_server.pause()  # connections stay open, nothing answers
    try:
        paused, took = timed(lim.try_acquire)
        assert took <= TIMEOUT + SLACK
        assert paused is EXPECTED[mode][0] or mode == "local"
        assert lim.get_stats()["storage_errors"] >= 2
    finally:
        private_server.resume()
    client = private_server.client()
    client.delete("riprap:{f}:gcra")
    until_redis_decides(lim, private_server)

    client.script_flush()  # after a failover or SCRIPT FLUSH: reloaded once, nothing lost
    errors = lim.get_stats()["storage_errors"]
    client.delete("riprap:{f}:gcra")
    assert lim.try_acquire()
    assert client.exists("riprap:{f}:gcra")
    assert lim.get_stats()["storage_errors"] == errors
    client.close()


@pytest.mark.parametrize("fault", ["stop", "pause"])
@pytest.mark.parametrize("mode", ["local", "fail_open", "fail_closed"])
def test_breaker_when_redis_fails(
    private_server: RedisServer, mode: str, fault: str
) -> None:
    config = CircuitBreakerConfig(failure_threshold=1)
    breaker = CircuitBreaker(
        "b", config, storage=storage(private_server), on_storage_error=mode
    )
    with breaker:
        pass
    if fault == "stop":
        private_server.stop()
    else:
        private_server.pause()

    def call() -> str:
        with breaker:
            return "ran"

    try:
        # The admission fails once (at most a socket timeout); the record then skips Redis.
        result, took = timed(call)
    finally:
        private_server.resume()
    assert took <= TIMEOUT + SLACK
    if mode == "fail_closed":
        assert isinstance(result, CircuitOpenError)
        assert isinstance(result.__cause__, (redis.ConnectionError, redis.TimeoutError))
        assert breaker.state.value == "open"
    else:
        assert result == "ran"
    stats = breaker.get_stats()
    assert stats["storage_errors"] >= 1
    assert stats["fallback_decisions"] == (0 if mode == "local" else 1)
    if mode == "local":
        # This process's own breaker decides meanwhile.
        with pytest.raises(ValueError), breaker:
            raise ValueError("down")
        with pytest.raises(CircuitOpenError):
            call()


def test_async_calls_do_not_hang_on_a_paused_redis(private_server: RedisServer) -> None:
    lim = RateLimiter(
        0.001,
        2,
        name="f",
        storage=storage(private_server),
        on_storage_error="fail_closed",
    )

    async def main() -> float:
        await lim.acquire_async()
        private_server.pause()
        try:
            start = time.monotonic()
            with pytest.raises(RateLimitExceeded) as info:
                await lim.acquire_async()
            assert isinstance(info.value.__cause__, redis.TimeoutError)
            return time.monotonic() - start
        finally:
            private_server.resume()
            await lim.storage.aclose()

    assert asyncio.run(main()) <= TIMEOUT + SLACK


def test_reg_F15_out_of_memory_is_a_storage_error(private_server: RedisServer) -> None:
    client = private_server.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.set("ballast", "x" * 2_000_000)
    client.config_set("maxmemory", "1mb")
    lim = RateLimiter(1, name="oom", storage=storage(private_server))
    assert lim.try_acquire()  # decided by the local fallback
    assert lim.get_stats()["storage_errors"] == 1
    assert not client.exists("riprap:{oom}:gcra")
    client.close()


def test_reg_D6_a_server_that_refuses_time_in_scripts() -> None:
    with RedisServer("--rename-command", "TIME", "") as server:
        lim = RateLimiter(1, name="t", storage=storage(server))
        with pytest.raises(ValueError, match="use time_source='client'"):
            lim.try_acquire()
        client_time = RateLimiter(1, name="t", storage=server.url, time_source="client")
        assert client_time.try_acquire()
        assert not client_time.try_acquire()
