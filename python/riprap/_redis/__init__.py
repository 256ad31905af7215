"""Shared state on Redis: `storage=` on the rate limiters and the circuit breaker.

Modules: `storage` (`RedisStorage`: clients, timeouts, running a script, outages), `scripts`
(every Lua script), `shared` (options, counters and the `on_storage_error` rules every
primitive shares), `gcra` (one limiter's bucket in Redis), `limiter` and `keyed` (the
Redis-backed `RateLimiter` and `KeyedRateLimiter`), `engine` and `quorum` (the two engines of a
Redis-backed breaker), `breaker` (the Redis-backed `CircuitBreaker`), `server` (a throwaway
`redis-server` for tests and benchmarks). Only `storage` is imported with riprap; the redis
package itself is imported when a primitive is given `storage=`.
"""

from __future__ import annotations

from .storage import RedisStorage

__all__ = ["RedisStorage"]
