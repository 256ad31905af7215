"""Fixtures of the Redis tests: a real `redis-server` on a free 127.0.0.1 port.

One server serves the whole session (temporary directory, no persistence); every test starts
from an empty database. Tests that stop, pause or restart Redis get a private server. Without
`redis-server` on PATH the Redis tests are skipped locally, with the reason, and fail in CI
(`.ci/run` exports RIPRAP_CI=1 and installs it), so CI can never pass without running them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from riprap._redis.server import RedisServer, find_redis_server

MISSING = (
    "redis-server is not on PATH: install it (apt-get install redis-server) to run the "
    "Redis tests"
)


def _require_redis_server() -> None:
    if find_redis_server() is not None:
        return
    if os.environ.get("RIPRAP_CI") == "1":
        pytest.fail(f"{MISSING} (RIPRAP_CI=1: CI must run them)")
    pytest.skip(MISSING)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's server."""
    _require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
def server(redis_server: RedisServer) -> RedisServer:
    """The session's server, emptied for this test."""
    client = redis_server.client()
    client.flushall()
    client.script_flush()
    client.close()
    return redis_server


@pytest.fixture
def url(server: RedisServer) -> str:
    """The URL of the (emptied) session server."""
    return server.url


@pytest.fixture
def r(server: RedisServer) -> Iterator[Any]:
    """A plain redis-py client of the session server, to look at what riprap stored."""
    client = server.client()
    yield client
    client.close()


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    """A server of this test's own, to stop, pause and restart."""
    _require_redis_server()
    with RedisServer() as server:
        yield server
