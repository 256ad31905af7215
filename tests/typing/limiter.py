"""Type-checked by `mypy --strict` (never executed): the limiter API as users write it."""

from __future__ import annotations

from collections.abc import Mapping

import riprap
from riprap.testing import ManualClock

clock = ManualClock()
limiter = riprap.RateLimiter(10.0, 20, name="api", on_limit="wait", clock=clock)
per_client = riprap.KeyedRateLimiter(5.0, max_keys=100_000, idle_ttl=60.0)

ok: bool = limiter.try_acquire()
limiter.acquire(2, timeout=1.0)
ok = per_client.try_acquire("10.0.0.1") and per_client.try_acquire(42, 2)
tracked: int = len(per_client)
stats: Mapping[str, object] = limiter.get_stats()


@limiter
def fetch(x: int) -> str:
    return str(x)


@per_client(key=lambda client, path: client, on_limit="raise")
def handle(client: str, path: str) -> str:
    return client + path


@limiter
async def afetch(x: int) -> int:
    return x


async def use() -> int:
    await limiter.acquire_async(timeout=0.5)
    await per_client.acquire_async(b"key")
    async with limiter:
        pass
    with limiter:
        pass
    text: str = fetch(1)
    return len(text) + await afetch(2) + len(handle("a", "/"))


# Shared state on Redis (never connected: this file is only type-checked).
shared = riprap.RateLimiter(
    100.0,
    name="api",
    storage="redis://localhost:6379/0",
    on_storage_error="local",
    local_fraction=0.25,
    time_source="server",
)
keyed_shared = riprap.KeyedRateLimiter(
    5.0, name="per-client", storage=riprap.RedisStorage("redis://localhost/0")
)
breaker = riprap.CircuitBreaker(
    "payments", storage="redis://localhost/0", shared="quorum", quorum=0.5
)
shared_stats: riprap.RateLimiterStats = shared.get_stats()
