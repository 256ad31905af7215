"""A bounded result cache: entries expire after a TTL and the least recently used go first.

Why pure Python, with no Rust core type behind it: everything a cache lookup does is work on
Python objects. A key is hashed and compared with its own `__hash__` and `__eq__`, and the value
is an arbitrary Python object that must stay alive while it is cached. A Rust map would have to
call back into Python for every hash and equality test and hold a reference to every key and
value, so it would add a boundary crossing and reference counting to each call without saving
any of that work. CPython's `OrderedDict` is written in C and already does the rest in O(1):
lookup, `move_to_end` on a hit, `popitem(last=False)` to evict the least recently used entry.
There is also no decision to share with the core: expiry is one comparison with the clock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from . import _fork, _registry
from . import _validate as v
from ._clock import check_clock
from ._stats import ResultCacheStats

__all__ = ["ResultCache"]


class ResultCache:
    """A thread-safe cache with a time to live and a bound on its size (TTL + LRU).

    `put(key, value)` stores a value for `ttl` seconds on the cache's clock; `get(key)` returns
    it while it is fresh (its age is at most `ttl`) and counts a hit, else counts a miss and
    returns the default. An expired entry is dropped when it is found. When a `put` would hold
    more than `max_entries` entries, the least recently used one (read or written longest ago)
    is evicted, so memory is bounded however many keys are seen.

    `get` and `put` are O(1): one lock, one dict operation, one read of the clock, and (on
    `put`) one tuple. `len()` first drops every expired entry, so it is O(n); it is meant for
    inspection, not for the hot path.

    Keys are any hashable objects, values any objects (`None` included: `get` tells a cached
    `None` from a miss only through `default`, e.g. `cache.get(key, MISSING)`).

    Time: the clock given (`clock=riprap.testing.ManualClock()` in tests), else
    `time.monotonic` (cache times never leave the cache, so they need no common origin with the
    Rust primitives). In a forked child the cache starts empty, with fresh statistics, like
    every other riprap primitive.

    Args:
        ttl: Seconds an entry stays fresh after it is stored (> 0, finite).
        max_entries: The most entries held at once (>= 1).
        clock: A `riprap.testing.ManualClock` (default: real monotonic time).
        name: Shown by the monitor and the metrics (default: "result_cache"; a fallback
            strategy's cache carries the strategy's name).

    .. versionadded:: 0.1.0
    """

    __slots__ = (
        "__weakref__",
        "_data",
        "_evictions",
        "_expirations",
        "_hits",
        "_lock",
        "_lookup",
        "_misses",
        "_now",
        "_touch",
        "clock",
        "max_entries",
        "name",
        "ttl",
    )

    def __init__(
        self,
        ttl: float,
        max_entries: int,
        *,
        clock: object = None,
        name: str | None = None,
    ) -> None:
        self.ttl = v.check_float("ttl", v.number("ttl", ttl), 0.0, inclusive=False)
        self.max_entries = v.check_int(
            "max_entries", v.integer("max_entries", max_entries), 1
        )
        self.clock = check_clock(clock)
        self._now: Callable[[], float] = (
            time.monotonic if self.clock is None else self.clock.now
        )
        self.name = v.name(name)
        self._after_fork()
        _fork.track(self)
        _registry.track(_registry.RESULT_CACHE, self, self.name or "result_cache")

    def _after_fork(self) -> None:
        """Start empty with a fresh lock (also the initial state)."""
        self._lock = threading.Lock()
        self._data: OrderedDict[Hashable, tuple[Any, float]] = OrderedDict()
        # Bound once: `get` is the hot path, and each attribute lookup costs.
        self._lookup = self._data.get
        self._touch = self._data.move_to_end
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The fresh value stored under `key`, else `default`; counts a hit or a miss."""
        now = self._now()
        with self._lock:
            entry = self._lookup(key)
            if entry is not None:
                if now <= entry[1]:
                    self._touch(key)
                    self._hits += 1
                    return entry[0]
                del self._data[key]
                self._expirations += 1
            self._misses += 1
            return default

    def put(self, key: Hashable, value: Any) -> None:
        """Store `value` under `key` for `ttl` seconds (evicts the least recently used if full)."""
        entry = (value, self._now() + self.ttl)
        with self._lock:
            data = self._data
            if data.pop(key, None) is None and len(data) >= self.max_entries:
                data.popitem(last=False)
                self._evictions += 1
            data[key] = entry

    def discard(self, key: Hashable) -> None:
        """Remove the entry stored under `key`, if any."""
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        """Remove every entry (the statistics are kept)."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        """Fresh entries held (expired ones are dropped first)."""
        now = self._now()
        with self._lock:
            data = self._data
            stale = [k for k, (_, expires) in data.items() if now > expires]
            for k in stale:
                del data[k]
            self._expirations += len(stale)
            return len(data)

    def __contains__(self, key: Hashable) -> bool:
        """Whether a fresh value is stored under `key` (not counted as a hit or a miss)."""
        now = self._now()
        with self._lock:
            entry = self._data.get(key)
            return entry is not None and now <= entry[1]

    def get_stats(self) -> ResultCacheStats:
        """Counters since construction, and the size and settings.

        `hits`, `misses`, `hit_rate`, `evictions` (least recently used entries dropped to make
        room), `expirations` (entries found stale), `size`, `max_entries`, `ttl`.
        """
        with self._lock:
            hits, misses = self._hits, self._misses
            return {
                "hits": hits,
                "misses": misses,
                "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
                "evictions": self._evictions,
                "expirations": self._expirations,
                "size": len(self._data),
                "max_entries": self.max_entries,
                "ttl": self.ttl,
            }

    def __repr__(self) -> str:
        return (
            f"ResultCache(ttl={self.ttl!r}, max_entries={self.max_entries}, "
            f"size={len(self._data)})"
        )
