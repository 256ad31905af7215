"""Reference twin of `rust/core/src/keyed.rs` and `rust/py/src/keyed.rs`.

One GCRA bucket per key in a plain dict, bounded by `max_keys`: a new key in a full table first
forgets every idle key (bucket full again), then, if that is fewer than `max(1, max_keys // 64)`,
as many of the keys closest to full as make up that number (smallest TAT, ties broken by key
order: int < str < bytes < big int, then by value). `idle_ttl`
forgets keys whose bucket has been full that long, at most once per `idle_ttl`. The Rust backend
splits tables of 8192 keys or more into shards, but counts and evicts over all of them as one
table, so it makes exactly these decisions at every size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .._fork import track
from .._validate import (
    U64_MAX,
    check_float,
    cost,
    int_at_least,
    max_wait,
    no_storage,
    number,
    secs_to_nanos,
)
from .._validate import name as _name
from .._validate import on_limit as _on_limit
from ._clock import clock_of
from ._limiter import (
    Counters,
    Waiters,
    Wakers,
    quota_arg,
    rate_limited,
    wait_until_due,
)
from ._wrapper import NativeWrapper

__all__ = ["KeyedLimit", "KeyedLimitedCall", "KeyedRateLimiter", "key_of"]

I64_MIN, I64_MAX = -(2**63), 2**63 - 1

Key = int | str | bytes


def key_of(key: object) -> Key:
    """`key` as an exact int, str or bytes; TypeError for anything else (bool included)."""
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, bytes):
        return bytes(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return int(key)
    raise TypeError(f"key must be an int, str or bytes, got {type(key).__name__}")


def _order(key: Key) -> tuple[int, int | bytes]:
    """The core's key order: ints in i64, str (UTF-8), bytes, then other ints by digits."""
    if isinstance(key, int):
        if I64_MIN <= key <= I64_MAX:
            return (0, key)
        return (3, str(key).encode())
    if isinstance(key, str):
        return (1, key.encode("utf-8", "surrogatepass"))
    return (2, key)


class KeyedRateLimiter:
    """One GCRA bucket per key: `rate` tokens per second and `burst` at most for each key.

    Holds exactly `max_keys` keys before it forgets any; then a new key forgets every idle key
    (bucket full again), and the keys closest to full until `max(1, max_keys // 64)` have gone;
    never a key with waiters.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        name: str | None = None,
        max_keys: int = 1_000_000,
        idle_ttl: float | None = None,
        clock: object = None,
        storage: object = None,
        on_storage_error: str | None = None,
    ) -> None:
        self._quota = quota_arg(rate, burst)
        self._name = _name(name)
        # As in the Rust binding: above i64 is as good as unbounded.
        self._max_keys = int_at_least("max_keys", max_keys, 1)
        self._ttl: int | None = None
        if idle_ttl is not None:
            seconds = check_float("idle_ttl", number("idle_ttl", idle_ttl), 0.0, False)
            self._ttl = max(1, secs_to_nanos(seconds))
        self._clock = clock_of(clock)
        self._clock_obj = clock
        no_storage("KeyedRateLimiter", storage, on_storage_error)
        self._origin = self._clock.now_ns()
        self._next_ticket = 0
        self._after_fork()
        track(self)

    def _after_fork(self) -> None:
        """No keys, no waiters, no counts (also in a forked child, where tickets go on)."""
        self._tats: dict[Key, int] = {}
        self._waiters: dict[Key, Waiters] = {}
        self._next_sweep = U64_MAX if self._ttl is None else self._ttl
        self._lock = threading.Lock()
        self._counters = Counters()
        self._evicted = 0
        self._wakers = Wakers()

    def _now(self) -> int:
        return max(0, self._clock.now_ns() - self._origin)

    # --- table maintenance (call with the lock held) ---

    def _forget(self, pick: Callable[[int], bool]) -> int:
        gone = [
            k for k, tat in self._tats.items() if pick(tat) and k not in self._waiters
        ]
        for k in gone:
            del self._tats[k]
        self._evicted += len(gone)
        return len(gone)

    def _sweep(self, now: int) -> None:
        ttl = self._ttl
        if ttl is not None and now >= self._next_sweep:
            self._forget(lambda tat: now - tat >= ttl)
            self._next_sweep = min(U64_MAX, now + ttl)

    def _make_room(self, now: int) -> None:
        """In a full table, forget every idle key, then the keys closest to full.

        Closest to full until a batch of `max(1, max_keys // 64)` has gone: each call reads
        every key, so each frees a whole batch.
        """
        if len(self._tats) < self._max_keys:
            return
        batch = max(1, self._max_keys // 64) - self._forget(lambda tat: tat <= now)
        if batch <= 0:
            return
        candidates = [
            (tat, _order(k), k)
            for k, tat in self._tats.items()
            if k not in self._waiters
        ]
        candidates.sort()
        for _, _, key in candidates[:batch]:
            del self._tats[key]
        self._evicted += len(candidates[:batch])

    def _take(self, key: Key, c: int, now: int) -> int:
        """0 when the tokens were taken (inserting a new key), else the wait."""
        self._sweep(now)
        tat = self._tats.get(key)
        if tat is not None:
            step = self._quota.schedule(tat, now, c)
            if step is None:
                return U64_MAX
            if step[1] == 0:
                self._tats[key] = step[0]
            return step[1]
        step = self._quota.schedule(0, now, c)
        if step is None:
            return U64_MAX
        self._make_room(now)
        self._tats[key] = step[0]
        return 0

    # --- the API ---

    def try_acquire(self, key: object, n: int = 1) -> bool:
        """Takes `n` tokens from `key`'s bucket if they are available now; never waits."""
        c = cost(self._quota, n)
        k = key_of(key)
        now = self._now()
        with self._lock:
            if self._take(k, c, now) == 0:
                self._counters.admitted += 1
                return True
            self._counters.rejected += 1
            return False

    def _reserve(self, key: object, n: int | None, timeout: float | None) -> int:
        """Reserve `n` tokens of `key`: 0 when admitted at once, else a ticket to wait on."""
        c = cost(self._quota, n)
        bound = max_wait("timeout", timeout)
        k = key_of(key)
        now = self._now()
        with self._lock:
            wait = self._take(k, c, now)
            if wait == 0:
                self._counters.admitted += 1
                return 0
            if wait == U64_MAX or (bound is not None and wait > bound):
                self._counters.rejected += 1
                refused = wait
            else:
                self._next_ticket += 1
                ticket = self._next_ticket
                tat = self._tats[k]
                end, _ = self._quota.schedule(tat, now, c) or (U64_MAX, 0)
                self._tats[k] = end
                self._waiters.setdefault(k, Waiters()).push(ticket, now, tat, end, c)
                return ticket
        raise rate_limited(self._name, refused)

    def acquire(self, key: object, n: int = 1, timeout: float | None = None) -> None:
        """Takes `n` tokens from `key`'s bucket, blocking until they are available.

        Raises RateLimitExceeded at once if the wait would exceed `timeout` seconds.
        """
        ticket = self._reserve(key, n, timeout)
        if ticket:
            self._wait_ticket(key_of(key), ticket)

    def _wait_ticket(self, key: Key, ticket: int) -> None:
        try:
            wait_until_due(
                self._clock, lambda now: self._remaining_ns(key, ticket, now)
            )
        except BaseException:
            self._cancel(key, ticket)
            raise
        self._complete(key, ticket)

    def _enter(self, key: object, raise_on_limit: bool) -> None:
        ticket = self._reserve(key, 1, 0.0 if raise_on_limit else None)
        if ticket:
            self._wait_ticket(key_of(key), ticket)

    def _remaining_ns(self, key: Key, ticket: int, clock_now: int) -> int:
        now = max(0, clock_now - self._origin)
        with self._lock:
            waiters = self._waiters.get(key)
            end = None if waiters is None else waiters.end_of(ticket)
        return 0 if end is None else max(0, end - self._quota.tolerance - now)

    def _remaining(self, key: object, ticket: int) -> float:
        """Seconds until `ticket`'s slot on `key` (0.0: due)."""
        return self._remaining_ns(key_of(key), ticket, self._clock.now_ns()) / 1e9

    def _complete(self, key: object, ticket: int) -> None:
        """The waiter holding `ticket` on `key` proceeds."""
        k = key_of(key)
        with self._lock:
            waiters = self._waiters.get(k)
            if waiters is None:
                return
            if waiters.complete(ticket):
                self._counters.admitted += 1
                self._counters.waited += 1
            if not len(waiters):
                del self._waiters[k]

    def _cancel(self, key: object, ticket: int) -> None:
        """The waiter holding `ticket` on `key` gave up: give its slot back, wake those behind."""
        k = key_of(key)
        shifted = False
        with self._lock:
            waiters = self._waiters.get(k)
            if waiters is None:
                return
            tat = self._tats.get(k)
            plan = None if tat is None else waiters.plan(ticket, tat)
            if plan is None:
                waiters.spend(ticket)
            else:
                shifted = waiters.apply(plan)
                self._tats[k] = plan.new_tat
            if not len(waiters):
                del self._waiters[k]
        if shifted:
            self._wakers.wake_after(ticket)

    def _watch(self, ticket: int, callback: Callable[[], object]) -> None:
        """Call `callback()` whenever `ticket`'s slot moves earlier."""
        self._wakers.watch(ticket, callback)

    def _unwatch(self, ticket: int) -> None:
        """Forget `ticket`'s callback."""
        self._wakers.unwatch(ticket)

    def __len__(self) -> int:
        return len(self._tats)

    def get_stats(self) -> dict[str, Any]:
        """Counters: name, rate, burst, admitted, rejected, waited, keys, evicted."""
        c = self._counters
        return {
            "name": self._name,
            "rate": self._quota.rate,
            "burst": self._quota.burst,
            "admitted": c.admitted,
            "rejected": c.rejected,
            "waited": c.waited,
            "keys": len(self._tats),
            "evicted": self._evicted,
        }

    @property
    def name(self) -> str | None:
        """The limiter's name (in errors and stats)."""
        return self._name

    @property
    def rate(self) -> float:
        """Tokens per second, per key."""
        return self._quota.rate

    @property
    def burst(self) -> float:
        """The bucket size, per key."""
        return self._quota.burst

    @property
    def max_keys(self) -> int:
        """The most keys tracked at once."""
        return self._max_keys

    @property
    def idle_ttl(self) -> float | None:
        """Seconds a full bucket is kept before it is forgotten (None: until room is needed)."""
        return None if self._ttl is None else self._ttl / 1e9

    @property
    def clock(self) -> Any:
        """The clock given at construction (None: the monotonic clock)."""
        return self._clock_obj

    def __repr__(self) -> str:
        q = self._quota
        return (
            f"KeyedRateLimiter(rate={float(q.rate)!r}, burst={float(q.burst)!r}, "
            f"name={self._name!r}, max_keys={self._max_keys})"
        )


class KeyedLimit:
    """A keyed limiter applied with one key function (what `@keyed(key=...)` wraps with)."""

    __slots__ = ("_key", "_limiter", "_raise")

    def __init__(
        self,
        limiter: KeyedRateLimiter,
        key: Callable[..., object],
        on_limit: str = "wait",
    ) -> None:
        self._limiter = limiter
        self._key = key
        self._raise = _on_limit(on_limit)

    @property
    def limiter(self) -> KeyedRateLimiter:
        """The keyed limiter."""
        return self._limiter

    def _run(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        key = self._key(*args, **kwargs)
        self._limiter._enter(key, self._raise)
        return func(*args, **kwargs)


class KeyedLimitedCall(NativeWrapper[KeyedLimit]):
    """A sync function limited per key (see `KeyedRateLimiter.__call__`)."""

    __slots__ = ()
    _kind = "KeyedLimitedCall"

    @property
    def keyed_limit(self) -> KeyedLimit:
        """The engine this function runs under."""
        return self._engine
